"""The `api` channel connector.

Inbound: `POST /v1/channels/{name}/messages` with `Authorization: Bearer <inbound_token>`,
idempotent on `external_id` (a redelivery gets the same answer and stores nothing new).
Outbound: the message is POSTed as JSON to `outbound_url`, signed with the Standard
Webhooks scheme; `webhook-id` is our message id, stable across retries, so a receiver
can drop a redelivery. 2xx = sent; 408/429/5xx/network error = retry; other 4xx = failed.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, ClassVar

import aiohttp
import orjson
from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connectors import egress
from connectors.base import (
    Capability,
    Connector,
    ConnectorContext,
    ConnectorSettings,
    DeliveryResult,
    Identity,
    InboundMessage,
    OutboundMessage,
    Refused,
    Unavailable,
)
from connectors.http import (
    ApiError,
    MalformedJson,
    bearer_token,
    fail,
    loads_json,
    read_capped,
    read_json,
    token_bytes,
    validation_details,
)
from connectors.signing import decode_secret, headers

RETRYABLE = {408, 425, 429}
# Seconds a sender is asked to wait when the gateway cannot take a message (503).
RETRY_AFTER = 5
# The most of a receiver's answer that is read (for its `id`, or the reason of a refusal).
MAX_ANSWER_BYTES = 64 * 1024
# A longer `id` in the answer is not an id the agents could use: it is ignored.
MAX_PROVIDER_ID_CHARS = 256


class ApiSettings(ConnectorSettings):
    inbound_token: SecretStr = Field(
        min_length=12, description="Bearer token senders must present."
    )
    # Declared before `outbound_url`, whose check reads it.
    allow_private_networks: bool = Field(
        False,
        description="Allow an outbound_url on loopback, private or link-local addresses "
        "(checked after DNS resolution, at every request).",
    )
    outbound_url: str | None = Field(None, description="Where replies are POSTed (http/https).")
    signing_secret: SecretStr | None = Field(
        None, description="whsec_… key for outbound signatures."
    )
    timeout: float = Field(10.0, gt=0)

    @field_validator("signing_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_secret(value.get_secret_value())
        return value

    @field_validator("outbound_url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        return egress.configured_endpoint(value, info.data.get("allow_private_networks", False))

    @model_validator(mode="after")
    def _signed(self) -> ApiSettings:
        if self.outbound_url and self.signing_secret is None:
            raise ValueError("signing_secret is required with outbound_url")
        return self


class Sender(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, min_length=1, max_length=256)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=256)
    attributes: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_identity(self) -> Sender:
        if not (self.id or self.email or self.phone):
            raise ValueError("give at least one of id, email, phone")
        return self

    def identity(self) -> Identity:
        if self.id:
            return Identity("api", self.id)
        if self.email:
            return Identity("email", self.email)
        return Identity("phone", self.phone or "")


class InboundPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    external_id: str = Field(min_length=1, max_length=512)
    text: str = Field(min_length=1, max_length=100_000)
    sender: Sender = Field(alias="from")
    subject: str | None = Field(None, max_length=998)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ApiConnector(Connector):
    kind: ClassVar[str] = "api"
    identity_kind: ClassVar[str] = "api"
    settings_model: ClassVar[type[ConnectorSettings]] = ApiSettings
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.TEXT, Capability.SUBJECT})
    refusals_reach_sender: ClassVar[bool] = True  # the caller gets the 422 itself

    settings: ApiSettings

    def __init__(self, name: str, settings: ConnectorSettings, ctx: ConnectorContext) -> None:
        super().__init__(name, settings, ctx)
        assert isinstance(settings, ApiSettings)
        self._token = settings.inbound_token.get_secret_value().encode()
        self._key = (
            decode_secret(settings.signing_secret.get_secret_value())
            if settings.signing_secret
            else None
        )
        ctx.add_route("POST", f"/v1/channels/{name}/messages", self.handle_inbound)

    async def handle_inbound(self, request: web.Request) -> web.StreamResponse:
        token = bearer_token(request)
        if token is None:
            fail(401, "unauthenticated", "missing bearer token for this channel")
        if not hmac.compare_digest(token_bytes(token), self._token):
            fail(401, "unauthenticated", "invalid token for this channel")
        data = await read_json(request, self.ctx.max_body_bytes)
        try:
            payload = InboundPayload.model_validate(data)
        except ValidationError as exc:
            fail(
                422,
                "validation_error",
                "the message is not valid",
                validation_details(exc.errors()),
            )
        message = InboundMessage(
            external_id=payload.external_id,
            sender=payload.sender.identity(),
            sender_name=payload.sender.name,
            text=payload.text,
            subject=payload.subject,
            contact_attributes=payload.sender.attributes,
            metadata=payload.metadata,
        )
        try:
            result = await self.ctx.submit(message)
        except Refused as exc:
            fail(422, "rejected", exc.reason)
        except Unavailable as exc:
            # The sender keeps the message and tries again (idempotent on external_id).
            err = ApiError(503, "unavailable", f"the gateway cannot take messages right now: {exc}")
            err.headers["Retry-After"] = str(RETRY_AFTER)
            raise err from None
        # Encoded in C (orjson); the same keys and values, compact.
        body = orjson.dumps(
            {
                "conversation_id": result.conversation_id,
                "message_id": result.message_id,
                "duplicate": result.duplicate,
            }
        )
        return web.Response(body=body, status=202, content_type="application/json", charset="utf-8")

    def openapi(self) -> dict[str, Any]:
        """The inbound endpoint, described from the model that validates it."""
        schema = InboundPayload.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/ApiInbound{model}"
        )
        defs = {f"ApiInbound{k}": v for k, v in schema.pop("$defs", {}).items()}
        error = {"$ref": "#/components/schemas/Error"}
        errors = {
            "400": "Malformed JSON or not UTF-8.",
            "401": "Missing or wrong channel token.",
            "413": "Body too large.",
            "422": "Wrong fields, or a message the gateway refuses.",
            "503": "The gateway cannot take messages right now; try again.",
        }
        accepted = {
            "type": "object",
            "properties": {
                "conversation_id": {"type": ["string", "null"]},
                "message_id": {"type": ["string", "null"]},
                "duplicate": {"type": "boolean"},
            },
            "required": ["conversation_id", "message_id", "duplicate"],
        }
        operation = {
            "summary": f"A customer message into the `{self.name}` channel",
            "operationId": f"post_channel_{self.name}_messages",
            "description": "Idempotent on `external_id`: the same id again gives the same "
            "answer with `duplicate: true` and stores nothing new.",
            "security": [{"bearer": []}],
            "x-roles": ["channel token"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ApiInbound"}}
                },
            },
            "responses": {
                "202": {
                    "description": "Stored (or already stored).",
                    "content": {"application/json": {"schema": accepted}},
                },
                **{
                    code: {
                        "description": text,
                        "content": {"application/json": {"schema": error}},
                    }
                    for code, text in errors.items()
                },
            },
        }
        return {
            "paths": {f"/v1/channels/{self.name}/messages": {"post": operation}},
            "schemas": {**defs, "ApiInbound": schema},
        }

    def payload(self, message: OutboundMessage) -> bytes:
        body = {
            "type": "message.outbound",
            "id": message.id,
            "conversation_id": message.conversation_id,
            "to": {"kind": message.to.kind, "address": message.to.address},
            "text": message.text,
            "subject": message.subject,
            "sender": {"name": message.sender_name},
            "automatic": message.automatic,
            "attempt": message.attempt,
        }
        return json.dumps(body, ensure_ascii=False).encode()

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        url = self.settings.outbound_url
        if not url or self._key is None:
            return DeliveryResult.failed(f"channel {self.name} has no outbound_url")
        body = self.payload(message)
        hdrs = headers(self._key, message.id, body) | {"Content-Type": "application/json"}
        try:
            # Resolved and checked now, then sent to the address checked (SSRF guard).
            target = await egress.target(url, allow_private=self.settings.allow_private_networks)
        except egress.RefusedTarget as exc:
            return DeliveryResult.failed(f"outbound_url refused: {exc}")
        except OSError as exc:
            return DeliveryResult.retry(f"cannot resolve outbound_url: {exc}")
        try:
            async with self.ctx.http.post(
                target.url,
                data=body,
                headers=hdrs | target.headers,
                server_hostname=target.server_hostname,
                allow_redirects=False,  # a redirect could point anywhere
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            ) as resp:
                # Only the start of the answer is read: a receiver may answer anything.
                answer, _ = await read_capped(resp.content, MAX_ANSWER_BYTES)
                try:
                    text = answer.decode(resp.charset or "utf-8", errors="replace")[:300]
                except LookupError:  # a charset Python does not know
                    text = answer.decode("utf-8", errors="replace")[:300]
                if 200 <= resp.status < 300:
                    json_answer = resp.content_type == "application/json"
                    return DeliveryResult.sent(_provider_id(answer) if json_answer else None)
                reason = f"HTTP {resp.status} from outbound_url: {text}".strip()
                if resp.status in RETRYABLE or resp.status >= 500:
                    return DeliveryResult.retry(
                        reason, _retry_after(resp.headers.get("Retry-After"))
                    )
                return DeliveryResult.failed(reason)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # aiohttp may name the URL, which may carry the receiver's credential.
            shown = egress.redact_urls(str(exc))
            return DeliveryResult.retry(f"cannot reach outbound_url: {type(exc).__name__}: {shown}")


def _provider_id(answer: bytes) -> str | None:
    """The receiver's id for the message: the `id` of its JSON object answer when that is
    a string or a number, else None (no id, `null`, not JSON, or cut off at the cap)."""
    try:
        data = loads_json(answer)
    except MalformedJson:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_PROVIDER_ID_CHARS else None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
