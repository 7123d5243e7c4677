"""Row mapping and the lookups every role of the SQLite store shares: conversations,
messages, contacts, agents and the load counters."""

from __future__ import annotations

import sqlite3

from connectors.base import Identity
from gateway.domain import identity, load
from gateway.model import (
    AgentState,
    Contact,
    Conversation,
    Message,
    loads,
)
from gateway.store.base import NotFound, Scope
from gateway.store.rows import (
    CONV_COLS,
    MSG_COLS,
    contact_row,
    conv_row,
    message_values,
    msg_row,
)
from gateway.store.sqlite.connection import SqliteBase


class SqliteRows(SqliteBase):
    # --- row mapping ------------------------------------------------------------------------
    _CONV_COLS = CONV_COLS
    _conv = staticmethod(conv_row)

    def _check_contact(
        self, conn: sqlite3.Connection, contact_id: str, scope: Scope | None
    ) -> None:
        """NotFound unless `scope` sees one of the contact's conversations."""
        if scope is None:
            return
        clause, args = scope.where()
        if not clause:
            return
        row = conn.execute(
            f"SELECT 1 FROM conversations WHERE contact_id=? AND {clause} LIMIT 1",
            (contact_id, *args),
        ).fetchone()
        if row is None:
            raise NotFound(f"contact {contact_id} not found")

    def _get_conv(self, conn: sqlite3.Connection, conversation_id: str) -> Conversation:
        row = conn.execute(
            f"SELECT {self._CONV_COLS} FROM conversations WHERE id=?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return self._conv(row)

    _MSG_COLS = MSG_COLS
    _msg = staticmethod(msg_row)

    def _get_msg(self, conn: sqlite3.Connection, message_id: str) -> Message:
        row = conn.execute(
            f"SELECT {self._MSG_COLS} FROM messages WHERE id=?", (message_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"message {message_id} not found")
        return self._msg(row)

    def _contact_of(self, conn: sqlite3.Connection, identity: Identity) -> str | None:
        row = conn.execute(
            "SELECT contact_id FROM identities WHERE kind=? AND address=?",
            (identity.kind, identity.address),
        ).fetchone()
        return None if row is None else self._resolve_contact_id(conn, row[0])

    @staticmethod
    def _resolve_contact_id(conn: sqlite3.Connection, contact_id: str) -> str:
        def merged_into(cid: str) -> str | None:
            row = conn.execute("SELECT merged_into FROM contacts WHERE id=?", (cid,)).fetchone()
            return None if row is None else row[0]

        return identity.follow_merges(contact_id, merged_into)

    def _contact(self, conn: sqlite3.Connection, contact_id: str) -> Contact:
        row = conn.execute(
            "SELECT id, name, attributes, created_at, merged_into FROM contacts WHERE id=?",
            (contact_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"contact {contact_id} not found")
        # A contact shows the identities of the contacts merged into it.
        identities = conn.execute(
            "SELECT kind, address, verified FROM identities WHERE contact_id=? OR contact_id IN"
            " (SELECT id FROM contacts WHERE merged_into=?) ORDER BY kind, address",
            (contact_id, contact_id),
        ).fetchall()
        claims = conn.execute(
            "SELECT kind, address FROM claims WHERE contact_id=? ORDER BY created_at, kind, address",
            (contact_id,),
        ).fetchall()
        return contact_row(row, identities, claims)

    @staticmethod
    def _insert_message(conn: sqlite3.Connection, m: Message) -> None:
        conn.execute(
            f"INSERT INTO messages({MSG_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            message_values(m),
        )

    @staticmethod
    def _agent_states(conn: sqlite3.Connection) -> list[AgentState]:
        return [
            AgentState(r[0], r[1], loads(r[2]), r[3])
            for r in conn.execute(
                "SELECT id, presence, capacity, last_assigned_at FROM agents ORDER BY id"
            )
        ]

    async def agent_states(self) -> list[AgentState]:
        return await self._run(self._agent_states)

    @staticmethod
    def _load(conn: sqlite3.Connection, agent_id: str, kind: str) -> int:
        row = conn.execute(
            "SELECT n FROM agent_load WHERE agent_id=? AND channel_kind=?", (agent_id, kind)
        ).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _adjust_load(
        conn: sqlite3.Connection,
        kind: str,
        before: tuple[str | None, str],
        after: tuple[str | None, str],
    ) -> None:
        """Keep `agent_load` equal to the count of conversations occupying capacity (the
        rule: gateway/domain/load.py)."""
        for agent, delta in load.changes(before, after):
            if delta < 0:
                conn.execute(
                    "UPDATE agent_load SET n = n + ? WHERE agent_id=? AND channel_kind=?",
                    (delta, agent, kind),
                )
            else:
                conn.execute(
                    "INSERT INTO agent_load(agent_id, channel_kind, n) VALUES (?,?,?)"
                    " ON CONFLICT(agent_id, channel_kind) DO UPDATE SET n = n + excluded.n",
                    (agent, kind, delta),
                )
