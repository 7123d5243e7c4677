"""Configuration of the agent workspace (issue 14): canned replies kept in the config file
(`canned_replies:`) and the files agents attach to replies (`agent_attachments:`).

Kept apart from gateway/config.py, which only hangs them on the root model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Shortcut = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
CannedTexts = Annotated[
    dict[Literal["de", "en"], Annotated[str, Field(min_length=1, max_length=20_000)]],
    Field(min_length=1),
]


class CannedReplyConfig(BaseModel):
    """A canned reply for a team (`queues`; none: every queue) or one agent (`agent`)."""

    model_config = ConfigDict(extra="forbid")

    shortcut: Shortcut = Field(description="Typed after `/` in the reply box.")
    title: str = Field(min_length=1, max_length=200)
    text: CannedTexts = Field(
        description="Per language (de, en). Placeholders: {{contact.name}}, {{agent.name}}, "
        "{{conversation.id}}."
    )
    queues: list[str] = Field(
        default_factory=list, description="Team reply for these queues (empty: every queue)."
    )
    agent: str | None = Field(None, description="A personal reply of this agent.")

    @model_validator(mode="after")
    def _one_owner(self) -> CannedReplyConfig:
        if self.agent is not None and self.queues:
            raise ValueError("a canned reply is either personal (agent) or for queues, not both")
        return self


class AgentAttachmentsConfig(BaseModel):
    """Files agents upload with a reply or a note."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(
        10 * 1024 * 1024, ge=1, le=100 * 1024 * 1024, description="Largest file accepted."
    )
    max_files: int = Field(5, ge=1, le=20, description="Files per message.")
    link_ttl: float = Field(
        30 * 86400.0,
        gt=0,
        description="Seconds a signed download link sent to a channel without files works.",
    )
