"""The knowledge-base bot by email (issue 15): Dovecot in, the article out over SMTP in the
customer's language, marked automatic; a reply reaches a person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from email_support import Dovecot, Mailbox, SmtpServer, email_config, make_mail

from tests.gateway.conftest import gateway_factory, wait_for

__all__ = ["gateway_factory"]

DEMO_KB = Path(__file__).resolve().parents[2] / "config" / "kb"


async def test_email_questions_answered_in_english_and_german_then_a_person(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    cfg = email_config(tmp_path, dovecot, mailbox, smtp_server)
    cfg["knowledge_base"] = {"path": str(DEMO_KB)}
    cfg["routing"]["rules"].insert(
        0,
        {
            "name": "mail-self-service",
            "when": {"channel": "mail"},
            "then": {"queue": "general"},
            "bot": "knowledge_base",
        },
    )
    _, client = await gateway_factory(cfg)
    await mailbox.append(
        make_mail(
            "Charged twice",
            sender="Dana <dana@customer.test>",
            body="Hello, I was charged twice for my order. Can I get my money back?",
        )
    )
    await mailbox.append(
        make_mail(
            "Passwort vergessen",
            sender="Jonas <jonas@kunde.test>",
            body="Hallo, ich habe mein Passwort vergessen und kann mich nicht anmelden.",
        )
    )

    async def two_mails() -> list[Any] | None:
        return smtp_server.received if len(smtp_server.received) >= 2 else None

    await wait_for(two_mails, timeout=20)
    by_to = {m.message["To"].addresses[0].addr_spec: m.message for m in smtp_server.received}
    for address, title, link in (
        ("dana@customer.test", "Refund for a double payment", "/help/en/refund"),
        ("jonas@kunde.test", "Passwort zurücksetzen", "/help/de/passwort-zuruecksetzen"),
    ):
        mail = by_to[address]
        assert mail["Auto-Submitted"] == "auto-replied"  # other robots stay quiet
        plain = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert plain.startswith(title) and link in plain, plain
    (conv,) = await client.conversations_of("email:dana@customer.test")
    assert conv["status"] == "resolved" and conv["assignee"] is None

    # Dana answers the bot's mail: the conversation goes to a person.
    await mailbox.append(
        make_mail(
            "Re: Charged twice",
            sender="Dana <dana@customer.test>",
            body="agent",
            headers={"In-Reply-To": by_to["dana@customer.test"]["Message-ID"]},
        )
    )

    async def assigned() -> dict[str, Any] | None:
        (c,) = await client.conversations_of("email:dana@customer.test")
        return c if c["assignee"] else None

    conv = await wait_for(assigned, timeout=20)
    assert conv["queue"] == "general"
    assert len(smtp_server.received) == 2  # the bot said nothing more
