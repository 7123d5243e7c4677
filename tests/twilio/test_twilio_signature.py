"""Twilio's signature scheme, checked with twilio-python's own test vectors
(tests/unit/test_request_validator.py in twilio/twilio-python)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from connectors.twilio import SignatureVerifier, signed_url

TOKEN = "12345"
URI = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
EXPECTED_WITH_443 = "kvajT1Ptam85bY51eRf/AJRuM3w="  # signed over https://mycompany.com:443/...
EXPECTED_HTTP_WITH_80 = "0ZXoZLH/DfblKGATFgpif+LLRf4="
BODY = '{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
BODY_SIGNATURE = "a9nBmqA0ju/hNViExpshrM61xv4="

verifier = SignatureVerifier(TOKEN)


def test_official_vector_signs_and_verifies() -> None:
    assert verifier.sign(URI, PARAMS) == EXPECTED
    assert verifier.verify(URI, PARAMS, EXPECTED)


def test_signature_made_with_default_port_verifies_without_it_and_vice_versa() -> None:
    assert verifier.verify(URI, PARAMS, EXPECTED_WITH_443)
    uri_443 = URI.replace(".com", ".com:443")
    assert verifier.verify(uri_443, PARAMS, EXPECTED)
    assert verifier.verify(uri_443, PARAMS, EXPECTED_WITH_443)
    assert verifier.verify(URI.replace("https", "http"), PARAMS, EXPECTED_HTTP_WITH_80)


def test_official_body_sha256_vector() -> None:
    uri = URI + "&bodySHA256=" + BODY_HASH
    assert hashlib.sha256(BODY.encode()).hexdigest() == BODY_HASH
    assert verifier.verify(uri, BODY, BODY_SIGNATURE)
    assert verifier.verify(uri.replace(".com", ".com:443"), BODY, BODY_SIGNATURE)
    # Same URL and signature, another body: the hash no longer matches.
    assert not verifier.verify(uri, BODY.replace("value", "other"), BODY_SIGNATURE)
    # A JSON body on a URL without bodySHA256 is never accepted.
    assert not verifier.verify(URI, BODY, BODY_SIGNATURE)


def test_forged_or_missing_signatures_fail() -> None:
    assert not verifier.verify(URI, PARAMS, "")
    assert not verifier.verify(URI, PARAMS, None)
    assert not verifier.verify(URI, {**PARAMS, "Digits": "9999"}, EXPECTED)
    assert not verifier.verify(URI.replace("foo=1", "foo=2"), PARAMS, EXPECTED)
    assert not SignatureVerifier("54321").verify(URI, PARAMS, EXPECTED)
    assert not verifier.verify(URI, PARAMS, EXPECTED[:-2] + "x=")


def test_shared_key_hmac_sha256_signatures() -> None:
    payload = URI + "".join(k + PARAMS[k] for k in sorted(PARAMS))
    expected = base64.b64encode(
        hmac.new(TOKEN.encode(), payload.encode(), hashlib.sha256).digest()
    ).decode()
    header = "key=webhooks_sharedkey_123,algorithm=HMAC_SHA256"
    assert verifier.verify(URI, PARAMS, expected, header)
    assert not verifier.verify(URI, PARAMS, expected)  # read as SHA1 without the header
    assert not verifier.verify(URI, PARAMS, expected, "algorithm=HMAC_MD5")


def test_signed_url_is_public_base_plus_path_and_raw_query() -> None:
    assert (
        signed_url("https://sb.example.com/", "/channels/sms/twilio/inbound", "a=1&b=%20x")
        == "https://sb.example.com/channels/sms/twilio/inbound?a=1&b=%20x"
    )
    assert signed_url("https://sb.example.com/pre", "/x", "") == "https://sb.example.com/pre/x"


def test_parameters_that_are_not_utf8_are_signed_over_their_bytes_and_nothing_else() -> None:
    # A value that was not UTF-8 arrives as lone surrogates (`surrogateescape`).
    raw = dict(PARAMS, Digits=b"\xff\xfe".decode("utf-8", "surrogateescape"))
    data = URI.encode() + b"".join(
        k.encode() + (b"\xff\xfe" if k == "Digits" else v.encode())
        for k, v in sorted(PARAMS.items())
    )
    good = base64.b64encode(hmac.new(TOKEN.encode(), data, hashlib.sha1).digest()).decode()
    assert verifier.verify(URI, raw, good)
    for other in ("\ufffd\ufffd", "\xff\xfe", b"\xff\xfd".decode("utf-8", "surrogateescape")):
        assert not verifier.verify(URI, dict(raw, Digits=other), good)
    assert not verifier.verify(URI, raw, EXPECTED)
