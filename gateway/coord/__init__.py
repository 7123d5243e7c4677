"""Coordination between gateway instances (issue 11): Redis key names (keys.py), the shared
client (client.py)."""
