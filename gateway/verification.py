"""Proving a claimed address: a one-time code mailed to it, typed back by the claimant.

A chat visitor who types an email address only *claims* it (the store keeps the claim on
the visitor's own contact). `start` mails a six-digit code to that address through the
outbox, like any reply (marked automatic, at most `MAX_SENDS` per address and per claimant
an hour); `confirm` checks what the visitor typed: within `CODE_TTL`, single use, compared
in constant time, `MAX_ATTEMPTS` wrong tries lock it for `LOCK_SECONDS`. Only a confirmed
code links the address — merging the visitor into the customer who holds it, recorded and
reversible (`Store.unmerge`). Codes are kept only as a salted HMAC and never logged; the
mail carrying one is shown redacted everywhere but in the mailbox it went to.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from connectors.base import Identity, VerificationResult
from gateway.model import ACTIVE_STATUSES
from gateway.services import Services
from gateway.store.base import ConversationFilter, NotFound, OutboundRequest, Store

log = logging.getLogger("switchboard.verification")

NAMESPACE = "verification"
CODE_TTL = 600.0
MAX_ATTEMPTS = 5
LOCK_SECONDS = 3600.0
MAX_SENDS = 3
SEND_WINDOW = 3600.0

TEXTS: dict[str, tuple[str, str]] = {
    "en": (
        "Your verification code",
        "Hello,\n\n"
        "someone, hopefully you, gave this address in the chat on our website.\n\n"
        "Your verification code: {code}\n\n"
        "Type it into the chat within {minutes} minutes. If it was not you, ignore this "
        "mail: nothing is linked to your address without the code.\n",
    ),
    "de": (
        "Ihr Bestätigungscode",
        "Guten Tag,\n\n"
        "jemand (hoffentlich Sie) hat diese Adresse im Chat auf unserer Website angegeben.\n\n"
        "Ihr Bestätigungscode: {code}\n\n"
        "Geben Sie ihn innerhalb von {minutes} Minuten im Chat ein. Waren Sie das nicht, "
        "ignorieren Sie diese E-Mail: Ohne den Code wird nichts mit Ihrer Adresse verknüpft.\n",
    ),
}


def language_of(tag: object) -> str:
    """`de`, `de-AT` → "de"; anything else (or nothing) → "en"."""
    if isinstance(tag, str) and tag.strip().lower()[:2] == "de":
        return "de"
    return "en"


def _digest(salt: bytes, code: str) -> str:
    return hmac.new(salt, code.encode(), hashlib.sha256).hexdigest()


class Verifier:
    def __init__(
        self,
        store: Store,
        services: Services,
        channel_kinds: dict[str, str],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.services = services
        self.send = services.reply
        self.channel_kinds = channel_kinds
        self.clock = clock
        # One decision at a time: two sockets of one visitor must not share an attempt.
        self._lock = asyncio.Lock()
        self._warned: set[str] = set()

    def email_channel(self, via: str | None) -> str | None:
        """The channel the code goes out on: `via` when it names an email channel, else the
        first email channel configured, else None (verification unavailable)."""
        if via is not None:
            if self.channel_kinds.get(via) == "email":
                return via
            if via not in self._warned:
                self._warned.add(via)
                log.warning("verify_via names no email channel", extra={"channel": via})
            return None
        return next((n for n, k in self.channel_kinds.items() if k == "email"), None)

    async def _load(self, key: str) -> dict[str, Any] | None:
        raw = await self.store.kv_get(NAMESPACE, key)
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def _save(self, key: str, data: dict[str, Any]) -> None:
        await self.store.kv_set(NAMESPACE, key, json.dumps(data, separators=(",", ":")))

    async def _recent_sends(self, key: str, now: float) -> list[float]:
        raw = await self._load(key)
        sends = raw.get("at", []) if raw else []
        return [float(t) for t in sends if isinstance(t, int | float) and t > now - SEND_WINDOW]

    @staticmethod
    def _code_key(channel: str, claimant: Identity) -> str:
        return f"code:{channel}:{claimant.kind}:{claimant.address}"

    async def start(
        self,
        channel: str,
        claimant: Identity,
        claimed: Identity,
        language: str,
        via: str | None = None,
    ) -> VerificationResult:
        """Mail a fresh code to `claimed` (replacing any earlier one of this claimant)."""
        out = self.email_channel(via)
        if out is None or claimed.kind != "email":
            return VerificationResult("unavailable")
        async with self._lock:
            now = self.clock()
            key = self._code_key(channel, claimant)
            current = await self._load(key) or {}
            locked_until = float(current.get("locked_until") or 0)
            if locked_until > now:
                return VerificationResult("locked", retry_after=locked_until - now)
            by_address = f"sent:{claimed.kind}:{claimed.address}"
            by_claimant = f"sent-by:{claimant.kind}:{claimant.address}"
            address_sends = await self._recent_sends(by_address, now)
            claimant_sends = await self._recent_sends(by_claimant, now)
            if len(address_sends) >= MAX_SENDS or len(claimant_sends) >= MAX_SENDS:
                oldest = min(address_sends if len(address_sends) >= MAX_SENDS else claimant_sends)
                return VerificationResult("rate_limited", retry_after=oldest + SEND_WINDOW - now)
            try:
                contact = await self.store.find_contact(claimant)
            except NotFound:
                return VerificationResult("unavailable")
            rows, _ = await self.store.list_conversations(
                ConversationFilter(contact_id=contact.id, limit=5)
            )
            conv = next((c for c in rows if c.status in ACTIVE_STATUSES), rows[0] if rows else None)
            if conv is None:
                return VerificationResult("unavailable")
            code = f"{secrets.randbelow(1_000_000):06d}"
            salt = secrets.token_bytes(16)
            await self._save(
                key,
                {
                    "claimed": [claimed.kind, claimed.address],
                    "salt": salt.hex(),
                    "digest": _digest(salt, code),
                    "expires_at": now + CODE_TTL,
                    "attempts": 0,
                },
            )
            await self._save(by_address, {"at": [*address_sends, now]})
            await self._save(by_claimant, {"at": [*claimant_sends, now]})
            subject, body = TEXTS[language_of(language)]
            await self.send(
                OutboundRequest(
                    conv.id,
                    body.format(code=code, minutes=int(CODE_TTL // 60)),
                    "bot",
                    None,
                    now,
                    subject=subject,
                    automatic=True,
                    channel=out,
                    to=claimed,
                    metadata={"verification": {"kind": claimed.kind, "address": claimed.address}},
                )
            )
            log.info("verification code queued", extra={"channel": out, "conversation": conv.id})
            return VerificationResult("sent", attempts_left=MAX_ATTEMPTS, expires_in=CODE_TTL)

    async def confirm(self, channel: str, claimant: Identity, code: str) -> VerificationResult:
        """Check a code the claimant typed; link the claimed address when it is right."""
        async with self._lock:
            now = self.clock()
            key = self._code_key(channel, claimant)
            rec = await self._load(key)
            locked_until = float((rec or {}).get("locked_until") or 0)
            if locked_until > now:
                return VerificationResult("locked", retry_after=locked_until - now)
            if rec is None or "digest" not in rec:
                return VerificationResult("none")
            if float(rec.get("expires_at") or 0) <= now:
                await self.store.kv_delete(NAMESPACE, key)
                return VerificationResult("expired")
            given = code.strip() if isinstance(code, str) else ""
            expected = str(rec.get("digest"))
            ok = hmac.compare_digest(_digest(bytes.fromhex(str(rec["salt"])), given), expected)
            if not ok:
                attempts = int(rec.get("attempts") or 0) + 1
                if attempts >= MAX_ATTEMPTS:
                    # Locked: this code is dead, and no new one for a while.
                    await self._save(key, {"locked_until": now + LOCK_SECONDS})
                    log.info("verification locked after wrong codes", extra={"tries": attempts})
                    return VerificationResult("locked", retry_after=LOCK_SECONDS)
                await self._save(key, {**rec, "attempts": attempts})
                return VerificationResult("wrong_code", attempts_left=MAX_ATTEMPTS - attempts)
            await self.store.kv_delete(NAMESPACE, key)
            kind, address = rec["claimed"]
            contact_id = await self.services.link_verified(
                claimant, Identity(str(kind), str(address)), now
            )
            log.info("claimed address verified", extra={"contact": contact_id})
            return VerificationResult("verified", contact_id=contact_id)
