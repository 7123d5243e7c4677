"""Portal links: signed, expiring, revocable; a changed link is forged."""

from __future__ import annotations

from gateway.portal import links

SECRET = b"s" * 32


def test_a_link_reads_back_and_works_until_it_expires() -> None:
    token = links.sign(SECRET, "ct_abc", 0, 2000)
    link = links.read(SECRET, token)
    assert link == links.Link("ct_abc", 0, 2000)
    assert links.check(link, 1999.5, 0) is None
    assert links.check(link, 2000, 0) == "expired"


def test_a_changed_link_is_forged() -> None:
    token = links.sign(SECRET, "ct_abc", 0, 2000)
    contact, epoch, expires, mac = token.split(".")
    for changed in (
        f"ct_abd.{epoch}.{expires}.{mac}",  # another contact
        f"{contact}.{epoch}.9999999999.{mac}",  # a longer life
        f"{contact}.1.{expires}.{mac}",  # another epoch
        f"{contact}.{epoch}.{expires}.{mac[:-1]}A",  # another signature
        f"{contact}.{epoch}.{expires}",
        "",
        "x" * 600,
    ):
        assert links.read(SECRET, changed) is None, changed
        assert links.check(links.read(SECRET, changed), 0, 0) == "forged"
    assert links.read(b"another secret, just as long....", token) is None


def test_revoking_bumps_the_epoch_and_old_links_stop() -> None:
    link = links.read(SECRET, links.sign(SECRET, "ct_abc", 3, 2000))
    assert links.check(link, 10, 3) is None
    assert links.check(link, 10, 4) == "revoked"
    assert links.check(link, 10, None) == "revoked"  # the contact is gone


def test_no_secret_signs_nothing_and_reads_nothing() -> None:
    try:
        links.sign(b"", "ct_abc", 0, 1)
    except ValueError:
        pass
    else:
        raise AssertionError("signed without a secret")
    assert links.read(b"", "ct_abc.0.1.x") is None
