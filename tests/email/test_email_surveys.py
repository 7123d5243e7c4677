"""Surveys by email through the gateway: Dovecot in, the question out over SMTP (aiosmtpd)
with one-click signed links; following a link records the score and offers a comment box;
the comment is kept; a changed link is refused; the opt-out link works."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from email_support import Dovecot, Mailbox, SmtpServer, email_config, make_mail

from tests.gateway.conftest import gateway_factory, wait_for
from tests.surveys.helpers import Clock, event_types, fire, resolve, surveys

__all__ = ["gateway_factory"]

CUSTOMER = "dana@customer.test"


async def test_csat_by_email_link_then_comment_and_a_tampered_link_refused(
    gateway_factory: Any,
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: Mailbox,
    smtp_server: SmtpServer,
) -> None:
    clock = Clock()
    cfg = email_config(tmp_path, dovecot, mailbox, smtp_server)
    cfg["surveys"] = {"delay": "2h", "secret": "a-long-test-secret-for-links"}
    gw, client = await gateway_factory(cfg, clock=clock)
    await mailbox.append(make_mail("Lost password", sender=f"Dana <{CUSTOMER}>"))
    convs = await wait_for(lambda: client.conversations_of(f"email:{CUSTOMER}"), timeout=15)
    conv = await wait_for(lambda: client.assigned(convs[0]["id"]))
    await resolve(client, conv["id"])
    await fire(gw, clock, 3 * 3600)
    await wait_for(lambda: smtp_server.received, timeout=10)
    [mail] = [m.message for m in smtp_server.received]
    assert mail["To"].addresses[0].addr_spec == CUSTOMER
    assert mail["Auto-Submitted"] == "auto-replied"  # other robots stay quiet
    plain = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert plain.startswith("How satisfied are you with the help you received?")
    links = dict(re.findall(r"^([1-5]): (http://\S+)$", plain, re.M))
    assert sorted(links) == ["1", "2", "3", "4", "5"]
    assert all(url in html for url in links.values())
    optout = re.search(r"^No more surveys, please: (http://\S+)$", plain, re.M)
    assert optout is not None

    # One click on 4: recorded, and a comment box offered.
    async with client.http.get(links["4"]) as resp:
        assert resp.status == 200
        page = await resp.text()
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Your answer: 4. Thank you!" in page and "<textarea" in page
    assert re.search(r"Answered on \w{3} \d{1,2}, \d{4}", page)  # Babel, in English
    [answered] = await surveys(client)
    assert (answered["score"], answered["comment"]) == (4, None)

    # The comment, through the form on that page.
    form = re.search(r'<form method="post" action="([^"]+)"', page)
    assert form is not None
    async with client.http.post(
        client.base + form.group(1), data={"comment": "Fast, thanks"}
    ) as resp:
        assert resp.status == 200
        assert "Thank you, your comment was saved." in await resp.text()
    [answered] = await surveys(client)
    assert (answered["score"], answered["comment"]) == (4, "Fast, thanks")

    # A second click does not change the first answer.
    async with client.http.get(links["1"]) as resp:
        assert resp.status == 200 and "Your answer: 4." in await resp.text()
    assert (await surveys(client))[0]["score"] == 4
    assert (await event_types(gw)).count("survey.answered") == 2  # score, then comment

    # A tampered link (another response id, or a changed signature) is refused.
    token = links["4"].split("/surveys/")[1].split("?")[0]
    response_id, mac = token.split(".")
    forged = [
        f"{response_id[:-1]}{'0' if response_id[-1] != '0' else '1'}.{mac}",
        f"{response_id}.{mac[:-2]}AA",
        f"{response_id}.",
    ]
    for bad in forged:
        async with client.http.get(f"{client.base}/surveys/{bad}?score=1") as resp:
            assert resp.status == 403, bad
            assert "This link is not valid." in await resp.text()
        async with client.http.post(f"{client.base}/surveys/{bad}", data={"comment": "x"}) as resp:
            assert resp.status == 403
    async with client.http.get(f"{client.base}/surveys/{token}?score=9") as resp:
        assert resp.status in (200, 400)  # answered already: shows the answer
    assert (await surveys(client))[0]["score"] == 4

    # The opt-out link.
    async with client.http.get(optout.group(1)) as resp:
        assert resp.status == 200
        assert "you will receive no more surveys" in await resp.text()
    status, state = await client.call("GET", f"/v1/contacts/{conv['contact_id']}/surveys")
    assert status == 200 and state["opted_out"] is True
