"""Twilio webhook signatures (`X-Twilio-Signature`).

The algorithm pieces are twilio-python's own `RequestValidator`: HMAC-SHA1 (HMAC-SHA256 for
webhooks signed with a SharedKey) over the full URL Twilio requested plus the sorted form
parameters, or over the URL alone with a `bodySHA256` query parameter for JSON bodies. The
URL is tried with and without the default port, as the library does; the comparison uses
`hmac.compare_digest`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs, urlparse

from multidict import MultiDict
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    add_port,
    get_signature_algorithm,
    remove_port,
)

__all__ = ["SIGNATURE_HEADER", "SIGNATURE_SETTINGS_HEADER", "SignatureVerifier", "signed_url"]

Params = Mapping[str, str] | MultiDict[str]


def signed_url(base_url: str, raw_path: str, raw_query: str) -> str:
    """The URL Twilio signed: the public base URL configured at Twilio plus the path and
    query of the request as received (kept percent-encoded, as Twilio sent them)."""
    url = base_url.rstrip("/") + raw_path
    return f"{url}?{raw_query}" if raw_query else url


def _same(a: str, b: str) -> bool:
    # `b` comes from a header: bytes that are not UTF-8 arrive as lone surrogates.
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8", "surrogatepass"))


class SignatureVerifier:
    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def verify(
        self,
        url: str,
        params: Params | str,
        signature: str | None,
        settings_header: str | None = None,
    ) -> bool:
        """True when `signature` signs `url` with `params` (the form parameters), or with a
        JSON body's text when the URL carries `bodySHA256`."""
        if not signature:
            return False
        algorithm = get_signature_algorithm(settings_header)
        parsed = urlparse(url)
        body_ok = True
        form: Params
        if isinstance(params, str):
            hashes = parse_qs(parsed.query).get("bodySHA256")
            if not hashes:
                return False
            body_ok = _same(str(self._validator.compute_hash(params)), hashes[0])
            form = {}
        else:
            form = params
        try:
            candidates = [
                str(self._validator.compute_signature(candidate, form, algorithm))
                for candidate in (remove_port(parsed), add_port(parsed))
            ]
        except ValueError:  # an algorithm this library does not know
            return False
        matches = [_same(candidate, signature) for candidate in candidates]
        return body_ok and any(matches)

    def sign(self, url: str, params: Params | None = None, algorithm: str | None = None) -> str:
        """Sign like Twilio does (used by tests and the stand-in)."""
        return str(self._validator.compute_signature(url, params or {}, algorithm))
