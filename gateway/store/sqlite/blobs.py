"""Blobs of the SQLite store: attachments and raw inbound items."""

from __future__ import annotations

import sqlite3

from gateway.store.base import NotFound, Scope
from gateway.store.sqlite.connection import SqliteBase


def put_blobs(conn: sqlite3.Connection, blobs: dict[str, tuple[str, bytes]]) -> None:
    """Store blobs inside the caller's transaction (one already stored is kept)."""
    for blob_id, (content_type, data) in blobs.items():
        conn.execute(
            "INSERT OR IGNORE INTO blobs(id, content_type, size, data) VALUES (?,?,?,?)",
            (blob_id, content_type, len(data), data),
        )


class SqliteBlobs(SqliteBase):
    async def get_blob(self, blob_id: str, scope: Scope | None = None) -> tuple[str, bytes]:
        def op(conn: sqlite3.Connection) -> tuple[str, bytes]:
            if scope is not None:
                clause, args = scope.where("c.queue", "c.assignee")
                if clause:
                    # A blob is seen through a message of a conversation the scope sees.
                    seen = conn.execute(
                        "SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                        f" WHERE (m.raw_blob = ? OR instr(m.attachments, ?) > 0) AND {clause}"
                        " LIMIT 1",
                        (blob_id, f'"{blob_id}"', *args),
                    ).fetchone()
                    if seen is None:  # or through a note (issue 14)
                        seen = conn.execute(
                            "SELECT 1 FROM notes n JOIN conversations c"
                            " ON c.id = n.conversation_id"
                            f" WHERE instr(n.attachments, ?) > 0 AND {clause} LIMIT 1",
                            (f'"{blob_id}"', *args),
                        ).fetchone()
                    if seen is None:
                        raise NotFound(f"blob {blob_id} not found")
            row = conn.execute(
                "SELECT content_type, data FROM blobs WHERE id=?", (blob_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"blob {blob_id} not found")
            return str(row[0]), bytes(row[1])

        return await self._run(op)
