"""Switchboard gateway core: model, config, store, ingest, routing dispatch, outbox, HTTP API."""

__version__ = "0.1.0"
