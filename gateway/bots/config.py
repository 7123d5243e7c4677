"""`bots:` in the config: external bots a routing rule hands a conversation to with
`bot: {webhook: NAME}` (gateway/bots/stage.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from connectors.egress import configured_endpoint
from gateway.kb.config import KB_BOT_QUEUE
from router.policies import PositiveDuration

# The queue a conversation waits in while a bot has it: no agent serves it, so routing
# never assigns it (gateway/bots/stage.py).
BOT_QUEUE = "bot"


def _default_keywords() -> dict[str, list[str]]:
    return {
        "en": ["agent", "human", "person", "operator"],
        "de": ["mensch", "mitarbeiter", "mitarbeiterin", "berater", "beraterin"],
    }


class WebhookBotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Declared before `url`, whose check reads it.
    allow_private_networks: bool = Field(
        False,
        description="Allow a url on loopback, private or link-local addresses (checked "
        "after DNS resolution, at every call).",
    )
    url: str = Field(description="http:// or https:// URL each customer message is POSTed to.")
    secret: SecretStr = Field(
        description="whsec_<base64>: the calls are signed with Standard Webhooks, as the "
        "event webhooks are; the bot's answers need not be signed."
    )
    timeout: PositiveDuration = Field(
        5.0, description="An answer later than this hands the conversation off at once."
    )
    max_turns: int = Field(
        5,
        ge=1,
        le=50,
        description="Bot answers per conversation; the customer's next message after the "
        "last one goes to a person.",
    )
    idle_after: PositiveDuration | None = Field(
        86400.0,
        description="A conversation whose customer has not written for this long while "
        "the bot has it is resolved (`by: idle:<bot>`; the customer writing again within "
        "the reopen window goes on with the bot); a customer message the bot never answered "
        "goes to a person instead. null: never.",
    )
    transcript: int = Field(
        10, ge=1, le=100, description="How many of the latest messages the call carries."
    )
    handoff_keywords: dict[
        Annotated[str, Field(pattern=r"^[a-z]{2}$")],
        list[Annotated[str, Field(min_length=1)]],
    ] = Field(
        default_factory=_default_keywords,
        description="Per language: a message that is one of these words (up to three words, "
        "case-insensitive) goes to a person without asking the bot. Every language's "
        "words count, whatever the contact's language.",
    )

    @field_validator("url")
    @classmethod
    def _endpoint(cls, value: str, info: ValidationInfo) -> str:
        return configured_endpoint(value, info.data.get("allow_private_networks", False))

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        from connectors.signing import decode_secret

        decode_secret(value.get_secret_value())
        return value

    def keywords(self) -> set[str]:
        return {k.lower() for words in self.handoff_keywords.values() for k in words}


def bot_problems(
    rules: list[Any], bots: dict[str, WebhookBotConfig], queues: list[str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules naming a bot that `bots:` does not define; a queue named like the bots' own."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    known = ", ".join(sorted(bots)) or "none defined"
    for i, queue in enumerate(queues):
        if queue in (BOT_QUEUE, KB_BOT_QUEUE):
            problems.append(
                (
                    ("routing", "queues", i, "name"),
                    f"queue name {queue!r} is reserved for conversations a bot has",
                )
            )
    for i, rule in enumerate(rules):
        name = getattr(rule.bot, "webhook", None)
        if name is not None and name not in bots:
            problems.append(
                (("routing", "rules", i, "bot", "webhook"), f"unknown bot {name!r} (bots: {known})")
            )
    return problems
