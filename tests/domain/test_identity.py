"""Identity rules: contact resolution, claims, links and contact updates, one row each."""

from __future__ import annotations

import pytest

from connectors.base import Identity
from gateway.domain.identity import ContactUpdate, Link, claims, follow_merges, link, update_contact

MERGES: list[tuple[str, dict[str, str], str, str]] = [
    ("on its own", {}, "a", "a"),
    ("merged once", {"a": "b"}, "a", "b"),
    ("merged along a chain", {"a": "b", "b": "c"}, "a", "c"),
    ("the target of a merge is itself", {"a": "b"}, "b", "b"),
    ("a cycle stops where it closes", {"a": "b", "b": "a"}, "a", "a"),
]


@pytest.mark.parametrize(("situation", "merged", "start", "answer"), MERGES,
                         ids=[r[0] for r in MERGES])  # fmt: skip
def test_follow_merges(situation: str, merged: dict[str, str], start: str, answer: str) -> None:
    assert follow_merges(start, merged.get) == answer


SENDER = Identity("webchat", "v-1")
MAIL = Identity("email", "dana@example.com")
PHONE = Identity("sms", "+4930123")

CLAIMS: list[tuple[str, list[Identity], dict[Identity, str], list[Identity]]] = [
    ("nothing typed", [], {}, []),
    ("a typed address nobody holds", [MAIL], {}, [MAIL]),
    ("a typed address another contact holds: still only a claim", [MAIL], {MAIL: "ct_other"},
     [MAIL]),
    ("the contact's own address is no claim", [MAIL], {MAIL: "ct_me"}, []),
    ("the sender itself is no claim", [SENDER], {SENDER: "ct_me"}, []),
    ("each once, in order", [PHONE, MAIL, PHONE], {}, [PHONE, MAIL]),
]  # fmt: skip


@pytest.mark.parametrize(("situation", "extras", "owners", "expected"), CLAIMS,
                         ids=[r[0] for r in CLAIMS])  # fmt: skip
def test_claims(
    situation: str, extras: list[Identity], owners: dict[Identity, str], expected: list[Identity]
) -> None:
    assert claims(SENDER, extras, "ct_me", owners.get) == expected


LINKS: list[tuple[str, str, str | None, Link]] = [
    ("nobody holds it: it becomes the claimant's", "ct_me", None, Link("verify", "ct_me")),
    ("the claimant holds it already", "ct_me", "ct_me", Link("verify", "ct_me")),
    ("another contact holds it: merged into that one", "ct_me", "ct_dana",
     Link("merge", "ct_dana")),
]  # fmt: skip


@pytest.mark.parametrize(("situation", "source", "holder", "expected"), LINKS,
                         ids=[r[0] for r in LINKS])  # fmt: skip
def test_link(situation: str, source: str, holder: str | None, expected: Link) -> None:
    assert link(source, holder) == expected


UPDATES: list[tuple[str, str | None, dict[str, str], str | None, dict[str, str], ContactUpdate]] = [
    ("nothing new", "Dana", {"plan": "pro"}, "Dana", {}, ContactUpdate(False, {"plan": "pro"})),
    ("a name for a contact without one", None, {}, "Dana", {}, ContactUpdate(True, {})),
    ("a different name is not taken", "Dana", {}, "D.", {}, ContactUpdate(False, {})),
    ("new attributes are added", "Dana", {"plan": "pro"}, None, {"lang": "de"},
     ContactUpdate(True, {"plan": "pro", "lang": "de"})),
    ("an attribute is overwritten", "Dana", {"plan": "pro"}, None, {"plan": "free"},
     ContactUpdate(True, {"plan": "free"})),
]  # fmt: skip


@pytest.mark.parametrize(("situation", "name", "stored", "sender_name", "attrs", "expected"),
                         UPDATES, ids=[r[0] for r in UPDATES])  # fmt: skip
def test_update_contact(
    situation: str,
    name: str | None,
    stored: dict[str, str],
    sender_name: str | None,
    attrs: dict[str, str],
    expected: ContactUpdate,
) -> None:
    assert update_contact(name, stored, sender_name, attrs) == expected
