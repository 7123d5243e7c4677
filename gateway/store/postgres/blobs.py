"""Blobs (attachments, raw messages) on PostgreSQL."""

from __future__ import annotations

from gateway.store.base import BlobStore, NotFound, Scope
from gateway.store.postgres.pool import Conn, PgBase, scope_where


class PgBlobs(PgBase, BlobStore):
    async def get_blob(self, blob_id: str, scope: Scope | None = None) -> tuple[str, bytes]:
        async def op(conn: Conn) -> tuple[str, bytes]:
            if scope is not None:
                raw, raw_args = scope.where("c.queue", "c.assignee")
                if raw:
                    clause, args = scope_where(raw, raw_args, 3)
                    # A blob is seen through a message of a conversation the scope sees.
                    seen = await conn.fetchval(
                        "SELECT 1 FROM messages m JOIN conversations c"
                        " ON c.id = m.conversation_id"
                        " WHERE (m.raw_blob = $1 OR strpos(m.attachments, $2) > 0)"
                        f" AND {clause} LIMIT 1",
                        blob_id,
                        f'"{blob_id}"',
                        *args,
                    )
                    if seen is None:  # or through a note (issue 14)
                        note_clause, note_args = scope_where(raw, raw_args, 2)
                        seen = await conn.fetchval(
                            "SELECT 1 FROM notes n JOIN conversations c"
                            " ON c.id = n.conversation_id"
                            f" WHERE strpos(n.attachments, $1) > 0 AND {note_clause} LIMIT 1",
                            f'"{blob_id}"',
                            *note_args,
                        )
                    if seen is None:
                        raise NotFound(f"blob {blob_id} not found")
            row = await conn.fetchrow("SELECT content_type, data FROM blobs WHERE id=$1", blob_id)
            if row is None:
                raise NotFound(f"blob {blob_id} not found")
            return str(row[0]), bytes(row[1])

        return await self._read(op)
