"""The call to an external bot: one signed POST per customer message, one JSON answer.

The request is signed with Standard Webhooks (connectors/signing.py), as the gateway's
event webhooks are: `webhook-id: bot_<message id>`, `webhook-timestamp`,
`webhook-signature`. The answer is one of

    {"action": "answer", "text": "..."}      the bot answers; it keeps the conversation
                                             (`"resolve": true`: and resolves it)
    {"action": "ask", "text": "..."}         the bot asks back; it keeps the conversation
    {"action": "handoff", "reason": "...", "summary": "...", "language": "de",
     "skills": ["billing"], "priority": "high"}   a person takes over

Anything else — a non-2xx status, a body that is not such JSON, a redirect, an address the
egress guard refuses, no answer within the bot's `timeout` — is a `BotFailure`, and the
conversation goes to a person at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from connectors import egress
from connectors.http import loads_json, read_capped
from connectors.signing import decode_secret, headers
from gateway.bots.config import WebhookBotConfig
from router import Handoff, Priority

MAX_ANSWER_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000


class BotFailure(Exception):
    """The bot did not give a usable answer; `reason` is `bot_failed` or `timeout`."""

    def __init__(self, reason: Literal["bot_failed", "timeout"], detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: Literal["answer", "ask"]
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    resolve: bool = False


class _Handoff(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: Literal["handoff"]
    reason: Annotated[str, Field(min_length=1, max_length=100)] = "bot"
    summary: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None
    language: Annotated[str, Field(max_length=35)] | None = None
    skills: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=20)
    ] = Field(default_factory=list)
    priority: Priority | None = None


_REPLY: TypeAdapter[_Answer | _Handoff] = TypeAdapter(
    Annotated[_Answer | _Handoff, Field(discriminator="action")]
)


class BotAnswer:
    """An answer or a question back, to send to the customer."""

    def __init__(self, action: Literal["answer", "ask"], text: str, resolve: bool = False) -> None:
        self.action = action
        self.text = text
        # `"resolve": true` on an answer: the bot is done; the customer writing again
        # reopens the conversation, still with the bot.
        self.resolve = resolve and action == "answer"


async def _post(
    http: aiohttp.ClientSession, cfg: WebhookBotConfig, body: bytes, hdrs: dict[str, str]
) -> bytes:
    try:
        target = await egress.target(cfg.url, allow_private=cfg.allow_private_networks)
    except egress.RefusedTarget:
        raise BotFailure("bot_failed", "the bot's address is not public") from None
    except TimeoutError:
        raise
    except OSError as exc:
        raise BotFailure("bot_failed", f"unreachable ({type(exc).__name__})") from None
    try:
        async with http.post(
            target.url,
            data=body,
            headers=hdrs | target.headers,
            server_hostname=target.server_hostname,
            allow_redirects=False,  # a redirect could point anywhere
        ) as r:
            if not 200 <= r.status < 300:
                raise BotFailure("bot_failed", f"status {r.status}")
            answer, more = await read_capped(r.content, MAX_ANSWER_BYTES)
            if more:
                raise BotFailure("bot_failed", "answer larger than 64 KiB")
            return answer
    except TimeoutError:
        raise
    except (aiohttp.ClientError, OSError) as exc:
        raise BotFailure("bot_failed", f"unreachable ({type(exc).__name__})") from None


def parse_reply(body: bytes) -> BotAnswer | Handoff:
    """The bot's answer, or BotFailure when it is not one of the three shapes."""
    try:
        data = loads_json(body)  # bounded: never a RecursionError
        reply = _REPLY.validate_python(data)
    except (ValueError, ValidationError) as exc:
        # The problem's kind and place, never the bot's text (it may hold customer data).
        where = ""
        if isinstance(exc, ValidationError) and exc.errors():
            first = exc.errors()[0]
            where = f": {'.'.join(str(p) for p in first['loc'])} {first['type']}"
        raise BotFailure("bot_failed", f"not a valid bot answer{where}") from None
    if isinstance(reply, _Answer):
        return BotAnswer(reply.action, reply.text, reply.resolve)
    return Handoff(
        reply.reason,
        reply.summary or None,
        reply.language or None,
        tuple(dict.fromkeys(reply.skills)),
        reply.priority,
    )


async def call_bot(
    http: aiohttp.ClientSession, cfg: WebhookBotConfig, msg_id: str, payload: dict[str, Any]
) -> BotAnswer | Handoff:
    """POST `payload` signed to the bot and read its answer within `cfg.timeout`."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    key = decode_secret(cfg.secret.get_secret_value())
    hdrs = headers(key, msg_id, body) | {"Content-Type": "application/json"}
    try:
        # One deadline for all of it: resolving the name, connecting, the answer.
        async with asyncio.timeout(cfg.timeout):
            data = await _post(http, cfg, body, hdrs)
    except TimeoutError:
        raise BotFailure("timeout", f"no answer within {cfg.timeout:g}s") from None
    return parse_reply(data)
