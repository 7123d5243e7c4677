"""Settings of a `webchat` channel (one YAML block under `channels`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.base import ConnectorSettings


class InvitationWhen(BaseModel):
    """When the widget invites: every condition given must hold (issue 15)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="The page's path (and query), a glob: `*` is any text, e.g. /pricing*.",
    )
    seconds_on_page: float = Field(
        0.0, ge=0, le=3600, description="Seconds the visitor has been on the page."
    )
    attributes: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        description="Visitor attributes the page gives the widget (the script tag's "
        "data-attributes JSON), each equal, e.g. {plan: pro}.",
    )
    also_when_unavailable: bool = Field(
        False,
        description="Also invite while nobody can answer (the channel is closed, or no agent "
        "who takes its chats is online); by default an invitation is offered only while "
        "someone can.",
    )


class Invitation(BaseModel):
    """A proactive invitation: the widget shows `text` in a bubble when `when` holds; a
    conversation opens only once the visitor answers, and carries the rule's name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]{0,64}$",
        description="The rule's name, kept on the conversation it opens; default invitation-N.",
    )
    when: InvitationWhen = Field(default_factory=lambda: InvitationWhen.model_validate({}))
    text: dict[str, str] = Field(
        min_length=1, description="The invitation per language: de and/or en."
    )

    @field_validator("text")
    @classmethod
    def _languages(cls, value: dict[str, str]) -> dict[str, str]:
        for lang, text in value.items():
            if lang not in ("de", "en"):
                raise ValueError(f"language {lang!r} is not one of de, en")
            if not text.strip() or len(text) > 500:
                raise ValueError(f"text.{lang} must be 1 to 500 characters")
        return value


class WebchatSettings(ConnectorSettings):
    secret: SecretStr = Field(
        min_length=16, description="HMAC key signing visitor tokens (keep it secret, ≥ 16 chars)."
    )
    allowed_origins: list[str] = Field(
        min_length=1,
        description=(
            "Exact origins of the sites that embed the widget, e.g. https://www.example.com;"
            ' "*" allows any site and must be written explicitly.'
        ),
    )
    title: str = Field("Chat with us", min_length=1, max_length=80)
    greeting: str = Field("Hi! How can we help you today?", max_length=500)
    prechat_form: bool = Field(
        True, description="Offer the optional name/email form before the first message."
    )
    max_message_chars: int = Field(4000, ge=1, le=100_000)
    rate_per_minute: int = Field(
        30, ge=1, le=10_000, description="Messages per visitor per minute."
    )
    handshake_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds a new socket has to send its hello frame."
    )
    max_sockets_per_visitor: int = Field(10, ge=1, le=1000)
    max_sockets_per_address: int = Field(
        50,
        ge=1,
        le=100_000,
        description="Open chat sockets per client address (an IPv6 client by its /64), "
        "counted from the upgrade, before the hello; more get 429 at once.",
    )
    max_sockets: int = Field(
        2000,
        ge=1,
        le=1_000_000,
        description="Open chat sockets on this channel in all; more get 503 at once.",
    )
    history_limit: int = Field(200, ge=0, le=2000, description="Messages restored on (re)connect.")
    heartbeat: float = Field(30.0, gt=0, description="Seconds between WebSocket pings.")
    abandon_after: float = Field(
        60.0,
        ge=0,
        description="A visitor who wrote and whose last socket stays closed this many seconds "
        "has left (a reload or a new page is back sooner): reported to the core, which "
        "counts an abandonment when no agent had replied.",
    )
    token_ttl: float = Field(
        30 * 86400.0,
        gt=0,
        description=(
            "A visitor token expires this long after its last use (each use renews it):"
            " seconds, or a number with s/m/h/d, e.g. 30d."
        ),
    )
    verify_via: str | None = Field(
        None,
        description=(
            "The email channel that mails the code proving a pre-chat email address;"
            " default: the first email channel. Without one, a typed address stays a claim."
        ),
    )

    invitations: list[Invitation] = Field(
        default_factory=list,
        max_length=50,
        description="Proactive invitations by page URL, time on page and visitor attributes; "
        "the first that holds is shown (issue 15).",
    )

    @field_validator("invitations")
    @classmethod
    def _invitation_names(cls, value: list[Invitation]) -> list[Invitation]:
        seen: set[str] = set()
        for i, inv in enumerate(value):
            if not inv.name:
                inv.name = f"invitation-{i + 1}"
            if inv.name in seen:
                raise ValueError(f"two invitations are named {inv.name!r}")
            seen.add(inv.name)
        return value

    @field_validator("token_ttl", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip().lower()
            units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
            try:
                if text and text[-1] in units:
                    return float(text[:-1]) * units[text[-1]]
                return float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a duration: write 3600, 12h or 30d") from None
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        out = []
        for raw in value:
            origin = raw.strip().rstrip("/")
            if origin == "*":
                out.append(origin)
                continue
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path
                or parts.query
                or parts.fragment
                or "@" in parts.netloc
            ):
                raise ValueError(
                    f"{raw!r} is not an origin: write scheme://host[:port], e.g. https://example.com"
                )
            out.append(f"{parts.scheme}://{parts.netloc.lower()}")
        return out
