"""Every Redis key and channel name the gateway uses, in one place.

All names start with the hash tag `{<prefix>}`: Redis Cluster hashes only the part between
the first `{` and the next `}`, so every key of one installation lands on one slot and a
Lua script or MULTI may touch several of them. The prefix comes from
`coordination.prefix` (config: letters, digits and `_.:-`, never a brace).
"""

from __future__ import annotations

import re

_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Keys:
    """Key names for one installation. `Keys("sb").lease("imap:support")` is
    `"{sb}:lease:imap:support"`."""

    def __init__(self, prefix: str = "switchboard") -> None:
        if not _PREFIX.match(prefix):
            raise ValueError(f"invalid coordination prefix {prefix!r}")
        self.prefix = prefix
        self.tag = "{" + prefix + "}"

    def key(self, *parts: str) -> str:
        """`{prefix}:part1:part2...`; parts must be non-empty."""
        if not parts or any(not p for p in parts):
            raise ValueError("a key needs non-empty parts")
        return ":".join((self.tag, *parts))

    # --- pub/sub channels (gateway/coord/__init__.py) --------------------------------------
    @property
    def events_channel(self) -> str:
        """Announcements of committed events (id, type, conversation) and live-only ones."""
        return self.key("events")

    def deliver_channel(self, instance: str) -> str:
        """Work handed to one instance (a webchat reply for a socket it holds)."""
        return self.key("deliver", instance)

    # --- keys -------------------------------------------------------------------------------
    def instance(self, instance: str) -> str:
        """An instance's heartbeat (expires when it dies)."""
        return self.key("instance", instance)

    def socket(self, channel: str, address: str) -> str:
        """Which instances hold a chat socket of (`channel`, `address`): a hash
        instance -> expiry."""
        return self.key("socket", channel, address)

    def lease(self, name: str) -> str:
        """The holder of a lease (gateway/coord/leases.py)."""
        return self.key("lease", name)

    def fence(self, name: str) -> str:
        """The fencing token counter of a lease: only ever grows."""
        return self.key("fence", name)

    def rate(self, name: str) -> str:
        """A shared rate limit's window (gateway/coord/ratelimit.py)."""
        return self.key("rate", name)

    def presence(self, agent: str) -> str:
        """An agent's presence heartbeat (gateway/coord/presence.py)."""
        return self.key("presence", agent)

    def viewers(self, conversation_id: str) -> str:
        """Who is viewing a conversation: a sorted set agent -> last heartbeat (server ms)
        (gateway/workspace/viewing.py)."""
        return self.key("viewers", conversation_id)

    def viewer_info(self, conversation_id: str) -> str:
        """The viewers' names, typing flags and since when: a hash agent -> JSON."""
        return self.key("viewer-info", conversation_id)

    @property
    def viewed(self) -> str:
        """The conversations that have viewers: a sorted set id -> last heartbeat."""
        return self.key("viewed")


__all__ = ["Keys"]
