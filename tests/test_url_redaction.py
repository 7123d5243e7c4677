"""What a log shows of a configured URL: where it goes, never the credential it carries."""

from __future__ import annotations

import pytest

from connectors.egress import redact_urls, redacted_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6380/2", "redis://host:6380/2"),
        ("http://user:PassW0rd@127.0.0.1:9/hooks/catch?token=S3cret", "http://127.0.0.1:9/hooks/…"),
        (
            "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            "https://hooks.slack.com/services/…",
        ),
        ("https://webhook.site/0f8fad5b-d9cb-469f-a165-70867728950e", "https://webhook.site/…"),
        ("https://example.com?key=S3cret#frag", "https://example.com/…"),
        ("http://[::1]:8080/in", "http://[::1]:8080/in"),
        ("https://example.com/", "https://example.com"),
        ("http://[::1", "(unparseable URL)"),
    ],
)
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_urls_inside_an_error_message_are_redacted() -> None:
    text = "404, message='Not Found', url='https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe'"
    assert redact_urls(text) == "404, message='Not Found', url='https://api.telegram.org/…/…'"
