"""`switchboard migrate` moves the workspace too: notes, canned replies, merges by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path

from connectors.base import Identity
from gateway.store import SqliteStore
from gateway.store.postgres import PostgresStore
from gateway.store.workspace import CannedReply, workspace_store
from tests.store.test_contract import inbound, ingest
from tests.store.test_migrate_from_sqlite import migrate_cli


def test_notes_canned_replies_and_merges_move_to_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    path = tmp_path / "switchboard.db"

    async def make() -> tuple[str, str, str]:
        sqlite = SqliteStore(path)
        await sqlite.open()
        try:
            ws = workspace_store(sqlite)
            a = await ingest(sqlite, inbound("1", "ann@example.com"))
            b = await ingest(sqlite, inbound("2", "bea@example.com"), now=1001)
            conv = a.conversation.id  # type: ignore[attr-defined]
            await ws.note_add(conv, "agent", "alice", "keep an eye on this", [], 1100.0)
            await ws.canned_put(CannedReply("cr_1", "hi", "Hi", {"de": "Hallo"}, "team"), 1100.0)
            merge, _ = await ws.contact_merge(a.contact_id, b.contact_id, "alice", 1200.0)  # type: ignore[attr-defined]
            return conv, merge.id, a.contact_id  # type: ignore[attr-defined]
        finally:
            await sqlite.close()

    conv, merge_id, ann = asyncio.run(make())
    migrate_cli(path, pg_dsn)

    async def check() -> None:
        pg = PostgresStore(pg_dsn)
        await pg.open()
        try:
            ws = workspace_store(pg)
            assert [n.text for n in await ws.notes(conv)] == ["keep an eye on this"]
            assert (await ws.canned_get("cr_1")).texts == {"de": "Hallo"}
            [merge] = await ws.contact_merges(ann)
            assert (merge.id, merge.by) == (merge_id, "alice")
            # ... and the merge can still be undone there.
            await ws.contact_merge_undo(ann, merge_id, 1300.0)
            bea = await pg.find_contact(Identity("email", "bea@example.com"))
            assert bea.id != ann and bea.merged_into is None
        finally:
            await pg.close()

    asyncio.run(check())
