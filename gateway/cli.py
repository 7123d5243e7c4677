"""`switchboard`: run the daemon, check a config, print its schema, dry-run routing."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.base import (
    CliCommand,
    ConnectorSettings,
    OfflineChannel,
    Quarantine,
    RawItem,
    Submit,
)
from gateway import __version__
from gateway.config import (
    ConfigError,
    LoadedConfig,
    json_schema,
    load_config,
    resolved_endpoint_problems,
)
from gateway.eventloop import new_event_loop
from gateway.registry import UnknownConnector, default_registry

DEFAULT_CONFIG = os.environ.get("SWITCHBOARD_CONFIG", "config/gateway.yaml")


def _load(path: str) -> LoadedConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


async def _run(loaded: LoadedConfig) -> tuple[int, bool]:
    """Serve until SIGTERM/SIGINT, then stop. The exit code, and whether everything
    stopped (False: something was abandoned at the shutdown deadline)."""
    from gateway.app import Gateway

    gateway = Gateway(loaded)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[Any]] = set()

    async def reload() -> None:
        try:
            await gateway.reload()
        except Exception:
            logging.getLogger("switchboard.reload").exception(
                "reload failed; the running config stays"
            )

    def hangup() -> None:
        # SIGHUP: reload the config file (gateway/reload.py); the outcome is logged.
        task = asyncio.ensure_future(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        await gateway.start()
    except OSError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        await gateway.stop()
        return 1, not gateway.abandoned
    print(
        f"switchboard {__version__} listening on http://{loaded.config.server.host}:{gateway.port}",
        file=sys.stderr,
        flush=True,
    )
    await stop.wait()
    await gateway.stop()
    return 0, not gateway.abandoned


def _serve(loaded: LoadedConfig) -> tuple[int, bool]:
    """Run the daemon on its own event loop. Unlike `asyncio.run`, which waits without
    end for every task left over to finish its cancellation (and for the executor's
    threads), the clean-up after the gateway stopped gets half a second in all; what is
    still running then is left behind."""
    loop = new_event_loop()  # uvloop when installed (gateway/eventloop.py)
    asyncio.set_event_loop(loop)
    try:
        code, clean = loop.run_until_complete(_run(loaded))
        if clean:
            grace = loop.time() + 0.5

            def finish(work: Awaitable[Any]) -> bool:
                task = asyncio.ensure_future(work, loop=loop)
                wait = asyncio.wait({task}, timeout=max(0.0, grace - loop.time()))
                done, _ = loop.run_until_complete(wait)
                return bool(done)

            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            clean = (
                (not leftovers or finish(asyncio.gather(*leftovers, return_exceptions=True)))
                and finish(loop.shutdown_asyncgens())
                and finish(loop.shutdown_default_executor())
            )
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return code, clean


def cmd_run(args: argparse.Namespace) -> int:
    from gateway import logs

    logs.setup(args.log_level)
    loaded = _load(args.config)
    if loaded is None:
        return 2
    code, clean = _serve(loaded)
    if not clean:
        # Something did not stop by the deadline (logged): exit now rather than wait for
        # it at interpreter exit (a store thread never closed would keep the process).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_check(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return 1
    private = asyncio.run(resolved_endpoint_problems(loaded))
    if private:
        print(str(ConfigError(private, args.config)), file=sys.stderr)
        return 1
    cfg = loaded.config
    from gateway.rulecheck import warnings

    for warning in warnings(cfg):
        print(f"warning: {warning}", file=sys.stderr)
    articles = ""
    if cfg.knowledge_base is not None:
        if loaded.kb_missing:  # a note, not a warning: a copied config may run without one
            print(
                f"note: knowledge_base.path: no folder {cfg.knowledge_base.path!r} next to "
                "the config; the knowledge base is empty",
                file=sys.stderr,
            )
        articles = f", {len(loaded.kb or ())} articles"
    print(
        f"{args.config}: ok ({len(cfg.channels)} channels, {len(cfg.agents)} agents, "
        f"{len(cfg.routing.queues)} queues, {len(cfg.routing.rules)} rules{articles})"
    )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from gateway.routetext import render, to_dict
    from router import PRIORITY_RANK, AgentSnapshot, Handoff, MessageFacts, explain

    loaded = _load(args.config)
    if loaded is None:
        return 1
    cfg = loaded.config
    channel = next((c for c in cfg.channels if c.name == args.channel), None)
    if channel is None:
        print(
            f"unknown channel {args.channel!r}; configured: {', '.join(c.name for c in cfg.channels)}",
            file=sys.stderr,
        )
        return 1
    attributes: dict[str, str] = {}
    for item in args.attr or []:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"--attr takes key=value, got {item!r}", file=sys.stderr)
            return 1
        attributes[key] = value
    handoff: dict[str, str] = {}
    for item in args.handoff or []:  # issue 15: as a bot's handoff would route it
        key, sep, value = item.partition("=")
        if not sep or key not in ("reason", "summary", "language", "skills", "priority"):
            print(
                f"--handoff takes reason|language|skills|priority|summary=value, got {item!r}",
                file=sys.stderr,
            )
            return 1
        handoff[key] = value
    if handoff and "reason" not in handoff:
        print("--handoff needs reason=...", file=sys.stderr)
        return 1
    if handoff.get("priority", "normal") not in PRIORITY_RANK:
        print(f"--handoff priority is one of {', '.join(PRIORITY_RANK)}", file=sys.stderr)
        return 1
    bot_handoff = (
        Handoff(
            handoff["reason"],
            handoff.get("summary"),
            handoff.get("language"),
            tuple(s for s in handoff.get("skills", "").split(",") if s),
            handoff.get("priority"),
        )
        if handoff
        else None
    )
    facts = MessageFacts(
        channel.name, channel.type, args.text, args.subject, attributes, bot_handoff
    )
    online = set(args.online.split(",")) if args.online else None
    agents = [
        AgentSnapshot(
            a.id,
            a.name,
            "online" if (online is None or a.id in online) else "offline",
            frozenset(a.queues),
            a.skills,
            a.capacity_for(channel.type),
            0,
        )
        for a in cfg.agents
    ]
    now = time.time()
    out = to_dict(explain(cfg.routing, facts, agents, {}, now), cfg.routing, attributes, now)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(render(out, now))
    return 0


def cmd_webhook_listen(args: argparse.Namespace) -> int:
    """A small receiver for trying the gateway out: verifies signatures, prints payloads."""
    from aiohttp import web

    from connectors.signing import InvalidSignature, decode_secret, verify

    key = decode_secret(args.secret)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(key, {k.lower(): v for k, v in request.headers.items()}, body)
        except InvalidSignature as exc:
            print(f"REJECTED ({exc}): {request.headers.get('webhook-id')}", flush=True)
            return web.json_response({"error": str(exc)}, status=401)
        print(
            f"verified {request.headers['webhook-id']}: {body.decode(errors='replace')}", flush=True
        )
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host=args.host, port=args.port, print=lambda s: print(s, flush=True))
    return 0


@dataclass(frozen=True, slots=True)
class _OfflineChannel:
    name: str
    settings: ConnectorSettings
    submit: Submit
    quarantine: Quarantine


class _CliHost:
    """What connector-contributed commands get from the core (connectors.base.CliHost)."""

    default_config = DEFAULT_CONFIG

    def with_channel(
        self, config: str, channel: str, kind: str, work: Callable[[OfflineChannel], Awaitable[int]]
    ) -> int:
        from gateway.app import Gateway
        from gateway.ingest import ChannelInfo

        loaded = _load(config)
        if loaded is None:
            return 1
        found = next((c for c in loaded.config.channels if c.name == channel), None)
        if found is None or found.type != kind:
            print(f"no {kind} channel named {channel!r} in {config}", file=sys.stderr)
            return 1
        settings = loaded.channel_settings[found.name]

        async def run() -> int:
            gateway = Gateway(loaded)
            await gateway.store.open()
            try:
                submit = gateway.quarantine.submitter(ChannelInfo(found.name, kind))

                async def quarantine(item: RawItem, reason: str) -> str:
                    return await gateway.quarantine.keep(found.name, item, reason)

                return await work(_OfflineChannel(found.name, settings, submit, quarantine))
            finally:
                await gateway.store.close()

        return asyncio.run(run())


def _connector_commands() -> list[CliCommand]:
    """Commands contributed by the channel kinds the registry knows (built in or through
    the `switchboard.connectors` entry points); a kind that cannot be loaded adds none."""
    registry = default_registry()
    commands: dict[tuple[str, str], CliCommand] = {}
    for kind in registry.kinds():
        try:
            cls = registry.get(kind)
        except UnknownConnector:
            continue
        for command in cls.cli_commands():
            commands.setdefault((command.group, command.name), command)
    return list(commands.values())


AddParser = Callable[..., argparse.ArgumentParser]


def _add_connector_commands(add_parser: AddParser) -> None:
    """`switchboard <group> <name>` for every connector-contributed command."""
    groups: dict[str, AddParser] = {}
    host = _CliHost()
    for command in _connector_commands():
        add = groups.get(command.group)
        if add is None:
            g = add_parser(command.group, help=command.group_help)
            add = g.add_subparsers(dest=f"{command.group}_command", required=True).add_parser
            groups[command.group] = add
        p = add(command.name, help=command.help)
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
        command.arguments(p)
        p.set_defaults(fn=lambda args, run=command.run: run(args, host))


def _api_target(args: argparse.Namespace) -> tuple[str, str] | None:
    """The running gateway's base URL and an admin token: `--url`/`--token`, else
    $SWITCHBOARD_URL/$SWITCHBOARD_TOKEN, else the config's server address and admin token."""
    url, token = args.url or os.environ.get("SWITCHBOARD_URL"), args.token
    token = token or os.environ.get("SWITCHBOARD_TOKEN")
    if url is None or token is None:
        loaded = _load(args.config)
        if loaded is None:
            return None
        server = loaded.config.server
        host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
        url = url or f"http://{host}:{server.port}"
        admin = next((t for t in loaded.config.auth.tokens if t.role == "admin"), None)
        if token is None and admin is not None:
            token = admin.token.get_secret_value()
    if token is None:
        print("no admin token: pass --token or set SWITCHBOARD_TOKEN", file=sys.stderr)
        return None
    return url.rstrip("/"), token


def cmd_quarantine(args: argparse.Namespace) -> int:
    """Inbound items the gateway could not take, through the running gateway's API."""
    import aiohttp

    target = _api_target(args)
    if target is None:
        return 2
    base, token = target
    headers = {"Authorization": f"Bearer {token}"}

    async def call(method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.request(method, base + path, **kw) as resp,
        ):
            return resp.status, await resp.read()

    async def run() -> int:
        action = args.quarantine_command
        try:
            if action == "list":
                params = {"limit": str(args.limit)}
                if not args.all:
                    params["status"] = "new"
                if args.channel:
                    params["channel"] = args.channel
                status, body = await call("GET", "/v1/quarantine", params=params)
            elif action == "show":
                status, body = await call("GET", f"/v1/quarantine/{args.id}")
            elif action == "raw":
                status, body = await call("GET", f"/v1/quarantine/{args.id}/raw")
                if status == 200:
                    out = Path(args.output) if args.output else None
                    if out is None:
                        sys.stdout.buffer.write(body)
                    else:
                        out.write_bytes(body)
                        print(f"wrote {len(body)} bytes to {out}", file=sys.stderr)
                    return 0
            else:
                status, body = await call("POST", f"/v1/quarantine/{args.id}/{action}")
        except aiohttp.ClientError as exc:
            print(f"cannot reach the gateway at {base}: {exc}", file=sys.stderr)
            return 1
        data = json.loads(body) if body else {}
        if status >= 400 and "error" in data:
            print(f"{status}: {data['error']['message']}", file=sys.stderr)
            return 1
        if args.json or action not in ("list",):
            print(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            items = data.get("items", [])
            for item in items:
                print(
                    f"{item['id']}  {item['status']:<9} {item['channel']:<12} "
                    f"{item['size']:>8} B  {item['reason'][:80]}"
                )
            if not items:
                print("nothing in quarantine", file=sys.stderr)
        return 0 if status < 400 else 1

    return asyncio.run(run())


def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy an SQLite store into PostgreSQL (gateway/store/postgres/from_sqlite.py)."""
    import sqlite3

    import asyncpg

    from gateway.store.postgres.from_sqlite import migrate_from_sqlite

    source, target = str(args.source), str(args.target)
    if not source.startswith("sqlite:"):
        print("--from is sqlite:PATH (the store's file)", file=sys.stderr)
        return 2
    if not target.startswith(("postgresql://", "postgres://")):
        print("--to is a PostgreSQL DSN: postgresql://user:password@host:port/db", file=sys.stderr)
        return 2
    try:
        migrate_from_sqlite(Path(source.removeprefix("sqlite:")), target)
    except (OSError, ValueError, sqlite3.Error, asyncpg.PostgresError) as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 1
    print("done: the PostgreSQL store has every row of the SQLite store", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"switchboard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the gateway daemon")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--log-level", default=os.environ.get("SWITCHBOARD_LOG_LEVEL", "INFO"))
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("check", help="validate a config; exit 0 when it is valid, 1 otherwise")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("schema", help="print the JSON Schema of the config")
    p.add_argument("-o", "--output")
    p.set_defaults(fn=cmd_schema)

    p = sub.add_parser("route", help="dry-run the router on a sample message and explain")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--channel", required=True)
    p.add_argument("--text", default="")
    p.add_argument("--subject")
    p.add_argument("--attr", action="append", help="contact attribute key=value (repeatable)")
    p.add_argument(
        "--handoff",
        action="append",
        help="a bot's handoff fact key=value: reason, language, priority, skills (a,b) "
        "(repeatable)",
    )
    p.add_argument("--online", help="comma-separated agents to treat as online (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(fn=cmd_route)

    p = sub.add_parser("webhook-listen", help="print signed webhooks (for trying the gateway out)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--secret", required=True)
    p.set_defaults(fn=cmd_webhook_listen)

    p = sub.add_parser(
        "migrate", help="copy a SQLite store into PostgreSQL (idempotent; stop the gateway first)"
    )
    p.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH")
    p.add_argument("--to", dest="target", required=True, metavar="postgresql://...")
    p.set_defaults(fn=cmd_migrate)

    _add_connector_commands(sub.add_parser)

    p = sub.add_parser("quarantine", help="inbound items the gateway could not take")
    q_sub = p.add_subparsers(dest="quarantine_command", required=True)
    for name, text in (
        ("list", "unreviewed items (--all: every item)"),
        ("show", "one item"),
        ("raw", "download an item exactly as it came"),
        ("retry", "read an item again with today's code and config, and ingest it"),
        ("dismiss", "mark an item reviewed"),
    ):
        q = q_sub.add_parser(name, help=text)
        q.add_argument("-c", "--config", default=DEFAULT_CONFIG)
        q.add_argument("--url", help="the gateway's base URL (default: from the config)")
        q.add_argument("--token", help="an admin token (default: $SWITCHBOARD_TOKEN or config)")
        q.add_argument("--json", action="store_true", help="print JSON")
        if name == "list":
            q.add_argument("--all", action="store_true")
            q.add_argument("--channel")
            q.add_argument("--limit", type=int, default=50)
        else:
            q.add_argument("id")
        if name == "raw":
            q.add_argument("-o", "--output", help="write to this file instead of stdout")
        q.set_defaults(fn=cmd_quarantine)

    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
