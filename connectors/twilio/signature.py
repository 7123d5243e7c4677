"""Twilio webhook signatures (`X-Twilio-Signature`).

The algorithm pieces are twilio-python's own `RequestValidator`: HMAC-SHA1 (HMAC-SHA256 for
webhooks signed with a SharedKey) over the full URL Twilio requested plus the sorted form
parameters, or over the URL alone with a `bodySHA256` query parameter for JSON bodies. The
URL is tried with and without the default port, as the library does; the comparison uses
`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs, urlparse

from multidict import MultiDict
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
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


_HASHES = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}


def undecodable(text: str) -> bool:
    """True when `text` holds bytes that were not UTF-8 (kept as lone surrogates by
    `surrogateescape`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _raw_signature(token: bytes, url: str, params: Params, algorithm: str | None) -> str:
    """The library's signature, over the parameters' original bytes: its `compute_signature`
    encodes strictly as UTF-8, which parameters that were not UTF-8 cannot be."""
    digest = _HASHES.get((algorithm or HMAC_SHA1).upper())
    if digest is None:
        raise ValueError(f"unsupported webhook signature algorithm: {algorithm}")
    text = url
    for name in sorted(set(params)):
        values = params.getall(name) if isinstance(params, MultiDict) else [params[name]]
        for value in sorted(set(values)):
            text += name + value
    mac = hmac.new(token, text.encode("utf-8", "surrogateescape"), digest)
    return base64.b64encode(mac.digest()).decode()


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
        """True when `signature` signs `url` with `params` (the form parameters; bytes that
        were not UTF-8 count as themselves), or with a JSON body's text when the URL carries
        `bodySHA256`."""
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
        raw = any(undecodable(key) or undecodable(value) for key, value in form.items())
        try:
            candidates = [
                _raw_signature(self._validator.token, candidate, form, algorithm)
                if raw
                else str(self._validator.compute_signature(candidate, form, algorithm))
                for candidate in (remove_port(parsed), add_port(parsed))
            ]
        except ValueError:  # an algorithm this library does not know
            return False
        matches = [_same(candidate, signature) for candidate in candidates]
        return body_ok and any(matches)

    def sign(self, url: str, params: Params | None = None, algorithm: str | None = None) -> str:
        """Sign like Twilio does (used by tests and the stand-in)."""
        return str(self._validator.compute_signature(url, params or {}, algorithm))
