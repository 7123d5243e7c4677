"""Internal notes: which agents a note mentions."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

# `@alice`, `@bob-2`, `@c.d`: an agent id after an `@` that does not follow a word character
# (so `mail@alice.example` mentions nobody).
_MENTION = re.compile(r"(?<![\w@])@([a-z0-9][a-z0-9_-]{0,62})", re.IGNORECASE)


def mentions_in(text: str, agents: Collection[str], explicit: Iterable[str] = ()) -> list[str]:
    """The configured agents a note mentions: each `@id` in the text that names one, then
    the `explicit` ones; each once, in order."""
    out: list[str] = []
    for found in (m.group(1) for m in _MENTION.finditer(text)):
        name = found if found in agents else found.lower()
        if name in agents and name not in out:
            out.append(name)
    for name in explicit:
        if name not in out:
            out.append(name)
    return out
