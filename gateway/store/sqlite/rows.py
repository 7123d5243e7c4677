"""Row mapping and the lookups every role of the SQLite store shares: conversations,
messages, contacts, agents and the load counters."""

from __future__ import annotations

import sqlite3
from typing import Any

from connectors.base import Identity
from gateway.domain import identity, load
from gateway.model import (
    AgentState,
    Contact,
    Conversation,
    Message,
    dumps,
    loads,
)
from gateway.store.base import NotFound
from gateway.store.sqlite.connection import SqliteBase


class SqliteRows(SqliteBase):
    # --- row mapping ------------------------------------------------------------------------
    _CONV_COLS = (
        "id, contact_id, channel, channel_kind, last_channel, status, queue, priority, created_at,"
        " updated_at, assignee, required_skills, tags, subject, thread_token, reply_kind,"
        " reply_address, routing, assigned_at, first_response_at, resolved_at, last_inbound_at"
    )

    @staticmethod
    def _conv(row: tuple[Any, ...]) -> Conversation:
        return Conversation(
            id=row[0],
            contact_id=row[1],
            channel=row[2],
            channel_kind=row[3],
            last_channel=row[4],
            status=row[5],
            queue=row[6],
            priority=row[7],
            created_at=row[8],
            updated_at=row[9],
            assignee=row[10],
            required_skills=loads(row[11]),
            tags=loads(row[12]),
            subject=row[13],
            thread_token=row[14],
            reply_kind=row[15],
            reply_address=row[16],
            routing=loads(row[17]),
            assigned_at=row[18],
            first_response_at=row[19],
            resolved_at=row[20],
            last_inbound_at=row[21],
        )

    def _get_conv(self, conn: sqlite3.Connection, conversation_id: str) -> Conversation:
        row = conn.execute(
            f"SELECT {self._CONV_COLS} FROM conversations WHERE id=?", (conversation_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return self._conv(row)

    _MSG_COLS = (
        "id, conversation_id, direction, channel, sender_type, sender_id, text, created_at,"
        " updated_at, html, subject, attachments, external_id, provider_message_id, status,"
        " reason, automated, metadata, raw_blob"
    )

    @staticmethod
    def _msg(row: tuple[Any, ...]) -> Message:
        return Message(
            id=row[0],
            conversation_id=row[1],
            direction=row[2],
            channel=row[3],
            sender_type=row[4],
            sender_id=row[5],
            text=row[6],
            created_at=row[7],
            updated_at=row[8],
            html=row[9],
            subject=row[10],
            attachments=loads(row[11]),
            external_id=row[12],
            provider_message_id=row[13],
            status=row[14],
            reason=row[15],
            automated=bool(row[16]),
            metadata=loads(row[17]),
            raw_blob=row[18],
        )

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
        return Contact(
            row[0],
            row[1],
            loads(row[2]),
            [(str(i[0]), str(i[1]), bool(i[2])) for i in identities],
            row[3],
            row[4],
            claims=[(str(c[0]), str(c[1])) for c in claims],
        )

    @staticmethod
    def _insert_message(conn: sqlite3.Connection, m: Message) -> None:
        conn.execute(
            "INSERT INTO messages(id, conversation_id, direction, channel, sender_type, sender_id, text,"
            " created_at, updated_at, html, subject, attachments, external_id, provider_message_id,"
            " status, reason, automated, metadata, raw_blob) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                m.id,
                m.conversation_id,
                m.direction,
                m.channel,
                m.sender_type,
                m.sender_id,
                m.text,
                m.created_at,
                m.updated_at,
                m.html,
                m.subject,
                dumps(m.attachments),
                m.external_id,
                m.provider_message_id,
                m.status,
                m.reason,
                int(m.automated),
                dumps(m.metadata),
                m.raw_blob,
            ),
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
