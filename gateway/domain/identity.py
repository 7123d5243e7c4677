"""How identities resolve to contacts.

- A message's *sender* identity is the contact: an identity belongs to one contact, and a
  contact merged into another answers as the one it was merged into (followed to the end
  of the chain; a cycle stops where it closes).
- *Extra* identities a message carries (the email a chat visitor typed) are only claims of
  the sender's contact, never a way into another contact, until the customer proves one
  (`link`): an address nobody holds becomes the claimant's own (verified); an address
  another contact holds merges the claimant's contact into that one.
- A message updates its contact's attributes; a name is taken only when the contact has
  none yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from connectors.base import Identity


def follow_merges(contact_id: str, merged_into: Callable[[str], str | None]) -> str:
    """The contact that answers for `contact_id`: `merged_into(id)` is the contact `id`
    was merged into (None when it stands alone)."""
    seen: set[str] = set()
    while True:
        target = merged_into(contact_id)
        if target is None or contact_id in seen:
            return contact_id
        seen.add(contact_id)
        contact_id = target


def claims(
    sender: Identity,
    extras: Iterable[Identity],
    contact_id: str,
    owner_of: Callable[[Identity], str | None],
) -> list[Identity]:
    """The extra identities that become claims of the sender's contact `contact_id`: not
    the sender itself, not one the contact already holds, each once, in order.
    `owner_of(identity)`: the contact holding it (merges followed), None if nobody."""
    out: list[Identity] = []
    for extra in extras:
        if extra == sender or extra in out or owner_of(extra) == contact_id:
            continue
        out.append(extra)
    return out


@dataclass(frozen=True, slots=True)
class Link:
    """What proving `claimed` does for the claimant's contact `source`: `verify` (the
    identity becomes the source's own) or `merge` (the source joins `into`)."""

    action: Literal["verify", "merge"]
    into: str


def link(source: str, holder: str | None) -> Link:
    """`holder`: the contact that holds the proven identity now, if any."""
    if holder is None or holder == source:
        return Link("verify", source)
    return Link("merge", holder)


@dataclass(frozen=True, slots=True)
class ContactUpdate:
    changed: bool
    attributes: dict[str, str]


def update_contact(
    stored_name: str | None,
    stored_attributes: Mapping[str, str],
    sender_name: str | None,
    attributes: Mapping[str, str],
) -> ContactUpdate:
    """What a message does to its (existing) contact: its attributes overwrite the stored
    ones of the same name; a sender name is taken when the contact has none (the store
    keeps the name it has: `COALESCE(name, sender_name)`)."""
    merged = dict(stored_attributes)
    if not attributes and not (sender_name and not stored_name):
        return ContactUpdate(False, merged)
    merged.update(attributes)
    return ContactUpdate(True, merged)
