"""Link-signing secrets made at first start (portal, surveys, agents' file links): instances
started together on one PostgreSQL end with one secret, so a link one of them signed opens
on every other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config_surveys import SurveysConfig
from gateway.portal import links as portal_links
from gateway.portal.config import PortalConfig
from gateway.portal.service import SECRET_KEY as PORTAL_KEY
from gateway.portal.service import SECRET_NAMESPACE as PORTAL_NS
from gateway.portal.service import Portal
from gateway.store.postgres import PostgresStore
from gateway.surveys import links as survey_links
from gateway.surveys.service import SECRET_KEY as SURVEY_KEY
from gateway.surveys.service import SECRET_NAMESPACE as SURVEY_NS
from gateway.surveys.service import Surveys
from gateway.workspace.files import SECRET_KEY as FILES_KEY
from gateway.workspace.files import SECRET_NAMESPACE as FILES_NS
from gateway.workspace.files import AgentFiles
from tests.pg import PgServer

INSTANCES = 4
ROUNDS = 8


@pytest.fixture
async def stores(pg_server: PgServer, tmp_path: Path) -> AsyncIterator[list[PostgresStore]]:
    """Store objects on one database: one per instance."""
    dsn = pg_server.schema_dsn(tmp_path)
    opened = [PostgresStore(dsn) for _ in range(INSTANCES)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


def unused() -> Any:
    """A collaborator the secret never touches."""
    return None


async def test_portals_started_together_open_each_others_links(
    stores: list[PostgresStore],
) -> None:
    for _ in range(ROUNDS):
        await stores[0].kv_delete(PORTAL_NS, PORTAL_KEY)  # a first start, again
        portals = [
            Portal(
                lambda: PortalConfig(enabled=True),
                store,
                unused(),
                unused(),
                time.time,
                lambda: "https://support.example.com",
                dict,
            )
            for store in stores
        ]
        kept = await asyncio.gather(*(p.secret() for p in portals))
        token = portal_links.sign(kept[0], "ct_1", 0, int(time.time()) + 60)
        assert all(portal_links.read(secret, token) is not None for secret in kept)
        assert {await p.secret() for p in portals} == {kept[0]}


async def test_surveys_started_together_verify_each_others_links(
    stores: list[PostgresStore],
) -> None:
    for _ in range(ROUNDS):
        await stores[0].kv_delete(SURVEY_NS, SURVEY_KEY)
        surveys = [
            Surveys(SurveysConfig(), store, unused(), unused(), time.time, {}, lambda: "")
            for store in stores
        ]
        await asyncio.gather(*(s.start() for s in surveys))
        token = survey_links.sign(surveys[-1].secret, "rsp_1")
        assert [survey_links.verify(s.secret, token) for s in surveys] == ["rsp_1"] * INSTANCES


async def test_agent_file_links_share_one_secret(stores: list[PostgresStore]) -> None:
    for _ in range(ROUNDS):
        await stores[0].kv_delete(FILES_NS, FILES_KEY)
        files = [AgentFiles(store, unused(), lambda: "", 60.0, time.time) for store in stores]
        kept = await asyncio.gather(*(f.secret() for f in files))
        assert len(set(kept)) == 1
