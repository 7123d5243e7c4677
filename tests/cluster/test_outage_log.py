"""A lost store is logged once when lost, once per interval while lost, once when back;
the tracebacks it causes elsewhere are kept out of the production log."""

from __future__ import annotations

import io
import json
import logging

from gateway import logs
from gateway.store.outage import Outage, StoreUnavailable


def test_one_line_per_interval_while_the_store_is_lost() -> None:
    stream = io.StringIO()
    out = logs.handler(stream)
    logger = logging.getLogger("switchboard.store")
    logger.addHandler(out)
    now = [100.0]
    outage = Outage("store (PostgreSQL)", interval=30.0, clock=lambda: now[0])
    try:
        for _ in range(200):  # 100 s of failures, two per second
            outage.failed(ConnectionRefusedError(111, "Connect call failed"))
            now[0] += 0.5
        assert outage.reason is not None and "ConnectionRefusedError" in outage.reason
        outage.succeeded()
        outage.succeeded()
        assert outage.reason is None
    finally:
        logger.removeHandler(out)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [x["msg"] for x in lines] == [
        "store (PostgreSQL) unreachable",
        "store (PostgreSQL) still unreachable",
        "store (PostgreSQL) still unreachable",
        "store (PostgreSQL) still unreachable",
        "store (PostgreSQL) reachable again",
    ]
    assert lines[-1]["failed_operations"] == 200 and lines[-1]["down_seconds"] == 100.0


def test_tracebacks_of_a_lost_store_stay_out_of_the_log() -> None:
    stream = io.StringIO()
    out = logs.handler(stream)
    loop_log = logging.getLogger("switchboard.test-loop")
    loop_log.addHandler(out)
    try:
        try:
            try:
                raise ConnectionRefusedError(111, "refused")
            except OSError as exc:
                raise StoreUnavailable("PostgreSQL unreachable") from exc
        except StoreUnavailable:
            loop_log.exception("routing pass failed")
        try:
            raise ValueError("a real bug")
        except ValueError:
            loop_log.exception("routing pass failed")
    finally:
        loop_log.removeHandler(out)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1 and "ValueError: a real bug" in lines[0]["exc"]
