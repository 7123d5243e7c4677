"""Turning raw RFC 5322 bytes into what the core needs. Pure functions, no I/O.

`parse_email` never raises: whatever cannot be read is recorded in `ParsedEmail.defects`
and the rest is still returned, so a malformed message is still handed to the core.
"""

from __future__ import annotations

import contextlib
import hashlib
import html as html_lib
import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.header import decode_header
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import nh3

from connectors.base import Attachment, DeliveryReceipt, Identity, InboundMessage

# The local part of every Message-ID we generate starts with this (see compose.py), so our
# own mail coming back (a copy in the inbox, a forwarding loop) is recognised.
OUR_MESSAGE_ID_PREFIX = "sb."

_MSGID_RE = re.compile(r"<([^<>\s]+@[^<>\s]+|[^<>\s]+)>")
_TOKEN_CHARS = r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,63}"
_SUBJECT_TAG_RE = re.compile(r"\[#(" + _TOKEN_CHARS + r")\]")

# What is read of one mail, at most (a hostile mail must not cost seconds of CPU or
# hundreds of MB before a limit bites; the raw message is kept whole either way):
# - addresses per address header: the first MAX_ADDRESSES (the standard library's
#   address-list parser is superlinear); the total is recorded (`address_counts`);
MAX_ADDRESSES = 1000
# - the top-level header block: fields past MAX_HEADER_BYTES are dropped, except the ones
#   the gateway reads (From, Subject, Content-Type ...), each once and up to 64 KiB;
MAX_HEADER_BYTES = 256 * 1024
_MAX_KEPT_FIELD = 64 * 1024
# - MIME parts walked (text, HTML and attachments), and MIME nesting depth;
MAX_PARTS = 500
MAX_DEPTH = 50
# - HTML: the first MAX_HTML_BYTES of the HTML body, elements nested deeper than
#   MAX_HTML_DEPTH are flattened (their text is kept), before text extraction and
#   sanitising (both superlinear in nesting);
MAX_HTML_BYTES = 1024 * 1024
MAX_HTML_DEPTH = 100
# - thread references (In-Reply-To and References): the first and the latest, 200 in all.
MAX_REFS = 200
# Header blocks this small are parsed as they are (nothing in them can be costly).
_SMALL_HEADER = 8 * 1024

_ADDRESS_FIELDS = frozenset(
    {
        *("from", "to", "cc", "bcc", "reply-to", "sender", "delivered-to", "x-original-to"),
        *("resent-from", "resent-to", "resent-cc", "resent-bcc", "resent-sender"),
        *("return-path", "disposition-notification-to", "mail-followup-to", "mail-reply-to"),
        *("errors-to", "return-receipt-to", "x-original-from", "envelope-to"),
    }
)
_ESSENTIAL_FIELDS = frozenset(
    {
        *("from", "to", "cc", "reply-to", "sender", "subject", "date", "message-id"),
        *("in-reply-to", "references", "mime-version", "content-type"),
        *("content-transfer-encoding", "content-disposition", "auto-submitted"),
        *("precedence", "list-id", "list-unsubscribe", "return-path", "x-loop"),
        *("x-auto-response-suppress", "delivered-to", "x-original-to"),
    }
)
# Tokens that hide commas from an address list: quoted strings, comments, <angle addrs>.
_ADDR_TOKEN_RE = re.compile(rb'"(?:[^"\\]|\\.)*"?|\((?:[^()\\]|\\.)*\)?|<[^<>]*>?|,')


def _cut_addresses(value: bytes, keep: int) -> tuple[bytes, int]:
    """(the field value cut after its first `keep` addresses, how many it holds), in one
    linear pass that only finds the top-level commas."""
    count = 0
    start = 0
    cut: int | None = None
    for m in _ADDR_TOKEN_RE.finditer(value):
        if m.group() != b",":
            continue
        if value[start : m.start()].strip():
            count += 1
            if count == keep and cut is None:
                cut = m.start()
        start = m.end()
    if value[start:].strip():
        count += 1
    if cut is None or count <= keep:
        return value, count
    return value[:cut], count


def cap_headers(raw: bytes) -> tuple[bytes, dict[str, int], list[str]]:
    """The message with its top-level header block capped (see MAX_ADDRESSES and
    MAX_HEADER_BYTES): (bytes to parse, {header: addresses it held} for the headers cut,
    notes for the agent). A message with a small header block comes back as it is."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    end = min(ends) if ends else len(raw)
    if end <= _SMALL_HEADER:
        return raw, {}, []
    head, rest = raw[:end], raw[end:]
    fields: list[list[bytes]] = []
    for line in head.split(b"\n"):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    counts: dict[str, int] = {}
    kept: list[bytes] = []
    seen: set[str] = set()
    dropped = 0
    size = 0
    cut_refs = False
    for lines in fields:
        field = b"\n".join(lines)
        name_b, colon, value = field.partition(b":")
        name = name_b.strip().lower().decode("latin-1")
        if colon and name in _ADDRESS_FIELDS and len(value) > 4 * MAX_ADDRESSES:
            value, n = _cut_addresses(value, MAX_ADDRESSES)
            if n > MAX_ADDRESSES:
                counts[name] = counts.get(name, 0) + n
                field = name_b + b":" + value
        if colon and name in ("references", "in-reply-to") and len(field) > _MAX_KEPT_FIELD:
            # threading needs the root (first) and the latest (last) ids: keep both ends
            head = value[: value.rfind(b">", 0, 4096) + 1]
            tail = value[len(value) - _MAX_KEPT_FIELD // 2 :]
            field = name_b + b": " + head + b" " + tail[tail.find(b"<") :]
            cut_refs = True
        if size + len(field) > MAX_HEADER_BYTES and not (
            name in _ESSENTIAL_FIELDS and name not in seen and len(field) <= _MAX_KEPT_FIELD
        ):
            dropped += 1
            continue
        seen.add(name)
        size += len(field) + 1
        kept.append(field)
    notes = [
        f"{name.title()}: {n} addresses, only the first {MAX_ADDRESSES} were read"
        for name, n in counts.items()
    ]
    if dropped:
        notes.append(
            f"the header block is over {MAX_HEADER_BYTES} bytes: {dropped} header fields "
            "were not read"
        )
    if not counts and not dropped and not cut_refs:
        return raw, {}, []
    return b"\n".join(kept) + rest, counts, notes


_HTML_TAG_RE = re.compile(r"<(/?)([A-Za-z][^\s/>]*)[^>]*?(/?)>|<!--.*?-->", re.DOTALL)
# Elements that do not nest: void ones, and those whose end tag is optional (a page full of
# unclosed <p> or <li> is not deep).
_FLAT_TAGS = frozenset(
    (
        *("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"),
        *("source", "track", "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option"),
        *("thead", "tbody", "tfoot", "colgroup", "optgroup", "rt", "rp"),
    )
)


def cap_html(html: str) -> tuple[str, list[str]]:
    """HTML cut to MAX_HTML_BYTES (at a tag's start) with elements nested deeper than
    MAX_HTML_DEPTH flattened (their tags removed, their text kept); notes when cut."""
    notes: list[str] = []
    if len(html) > MAX_HTML_BYTES:
        cut = html.rfind("<", 0, MAX_HTML_BYTES)
        html = html[: cut if cut > MAX_HTML_BYTES // 2 else MAX_HTML_BYTES]
        notes.append(f"the HTML is over {MAX_HTML_BYTES} characters: only the first were read")
    if html.count("<") <= MAX_HTML_DEPTH:
        return html, notes
    out: list[str] = []
    depth = 0
    pos = 0
    flattened = 0
    for m in _HTML_TAG_RE.finditer(html):
        closing, tag, self_closing = m.group(1), (m.group(2) or "").lower(), m.group(3)
        if not tag or tag in _FLAT_TAGS or self_closing:
            continue
        if closing:
            depth = max(0, depth - 1)
            drop = depth >= MAX_HTML_DEPTH
        else:
            drop = depth >= MAX_HTML_DEPTH
            depth += 1
        if drop:
            out.append(html[pos : m.start()])
            pos = m.end()
            flattened += 1
    if not flattened:
        return html, notes
    out.append(html[pos:])
    notes.append(
        f"HTML nested deeper than {MAX_HTML_DEPTH} elements: {flattened} tags were flattened"
    )
    return "".join(out), notes


# --------------------------------------------------------------------------------------
# Results


@dataclass(slots=True)
class SplitText:
    """A message body cut into the new text, its signature and the quoted history."""

    new: str
    signature: str | None = None
    quote: str | None = None


@dataclass(slots=True)
class ParsedEmail:
    external_id: str
    raw: bytes
    message_id: str | None = None
    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    subject: str | None = None
    date: datetime | None = None
    # The new text only: quoted history and signature removed.
    text: str = ""
    # The whole text body, quote included.
    full_text: str = ""
    signature: str | None = None
    quote: str | None = None
    # Sanitised HTML of the new part (quote removed when a quote marker was found).
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    thread_refs: list[str] = field(default_factory=list)
    thread_token: str | None = None
    automated: bool = False
    automated_reasons: list[str] = field(default_factory=list)
    # Sent by us (our From address or one of our Message-IDs): never ingest it.
    own: bool = False
    notes: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    # Address headers holding more than MAX_ADDRESSES: header name -> how many (the first
    # MAX_ADDRESSES are in `to`/`cc`).
    address_counts: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class BounceReport:
    """A delivery status notification (RFC 3464) about a message we sent."""

    external_id: str
    raw: bytes
    message_id: str | None = None
    original_message_id: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    # The Action of the recipient block that decides: "failed" when any recipient failed.
    action: str | None = None
    recipient: str | None = None
    text: str = ""
    from_address: str | None = None
    subject: str | None = None
    # The report is about a message we sent (its original Message-ID is one of ours).
    ours: bool = False
    defects: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """The delivery failed for good. `delayed`, `relayed` and `expanded` reports say
        the message is still on its way (or went on where no report follows); a report
        without an Action counts as failed only with a permanent (5.x.x) status."""
        if self.action is not None:
            return self.action == "failed"
        return (self.status or "").startswith("5")

    @property
    def reason(self) -> str:
        parts = [p for p in (self.status, self.diagnostic) if p]
        return ": ".join(parts) if parts else "delivery failed (no reason given)"


# --------------------------------------------------------------------------------------
# Parsing with header lookups done once

_MISSING: Any = object()


class _ParsedMessage(EmailMessage):
    """An EmailMessage that parses each header once.

    With `policy.default` every lookup (`msg[...]`, `get`, `get_all`, and all that build on
    them: `get_content_type`, `get_param`, `get_filename`, ...) runs the header through the
    header registry again, ~50 µs a time, and reading one message looks up its
    Content-Type alone about ten times. The answers are kept per header name; whenever the
    header list changes (a new list, another length, `replace_header`) they are dropped,
    so a mutated message never answers from stale values."""

    def _parsed(self, name: str) -> tuple[Any, ...]:
        """Every `name` header, parsed (what `get_all` answers), from the cache if valid."""
        headers = self._headers  # type: ignore[attr-defined]
        entry = self.__dict__.get("_sb_header_cache")
        if entry is None or entry[0] is not headers or entry[1] != len(headers):
            entry = (headers, len(headers), {})
            self.__dict__["_sb_header_cache"] = entry
        cache: dict[str, tuple[Any, ...]] = entry[2]
        key = name.lower()
        values = cache.get(key)
        if values is None:
            values = cache[key] = tuple(super().get_all(name, ()))
        return values

    def get(self, name: str, failobj: Any = None) -> Any:
        try:
            values = self._parsed(name)
        except Exception:
            # a later header of that name is unreadable: answer like EmailMessage would
            return super().get(name, failobj)
        return values[0] if values else failobj

    def get_all(self, name: str, failobj: Any = None) -> Any:
        values = self._parsed(name)
        return list(values) if values else failobj

    def replace_header(self, _name: str, _value: Any) -> None:
        self.__dict__.pop("_sb_header_cache", None)
        super().replace_header(_name, _value)


class _Registry(HeaderRegistry):
    """HeaderRegistry builds a new header class (`type(...)`) on every lookup; the classes
    are stateless, so one per header name is kept."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            if len(self._classes) >= 256:  # arbitrary header names must not grow it forever
                self._classes.clear()
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def map_to_type(self, name: str, cls: Any) -> None:
        self._classes.clear()
        super().map_to_type(name, cls)


class _ParsePolicy(EmailPolicy):
    """`policy.default`, except that raw 8-bit header bytes (RFC 6532 UTF-8, or a sender's
    unlabelled legacy charset) are read before the header is parsed, as the body's are:
    UTF-8 when valid, else windows-1252 (`unsurrogate`). The header parser itself would
    turn those bytes into U+FFFD in unstructured headers (Subject) and parameters (file
    names), where nothing could repair them afterwards."""

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if isinstance(value, str) and not hasattr(value, "name"):
            value = unsurrogate(value)
        return super().header_fetch_parse(name, value)


_PARSE_POLICY = _ParsePolicy(message_factory=_ParsedMessage, header_factory=_Registry())


# --------------------------------------------------------------------------------------
# Small helpers


def raw_hash_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# Longest Message-ID kept readable in an external id (the core takes up to 512 characters).
_MAX_READABLE_ID = 400


def external_id_of(message_id: str | None, sender: str | None, date: str | None, raw: bytes) -> str:
    """The id the core dedupes a mail on: its Message-ID, qualified by who sent it and when.

    Templates and broken mailers reuse one Message-ID for different mails, so the
    Message-ID alone would drop another sender's mail as a redelivery. The same mail
    delivered again (a resync, a backfill, a second copy through a list or a relay) keeps
    its From and Date, so it keeps its id. Without a Message-ID, a hash of the bytes."""
    if not message_id:
        return raw_hash_id(raw)
    who = (sender or "").strip().lower()
    when = " ".join((date or "").split())
    if len(message_id) > _MAX_READABLE_ID:
        key = f"{message_id}\n{who}\n{when}".encode("utf-8", "replace")
        return "sha256:" + hashlib.sha256(key).hexdigest()
    digest = hashlib.sha256(f"{who}\n{when}".encode("utf-8", "replace")).hexdigest()[:16]
    return f"{message_id}#{digest}"


def normalize_msgid(value: str | None) -> str | None:
    """`<id@host>` (angle brackets kept, surrounding noise removed), or None."""
    if not value:
        return None
    m = _MSGID_RE.search(value)
    if m:
        return f"<{m.group(1)}>"
    value = value.strip()
    if value and not any(c.isspace() for c in value) and "@" in value:
        return f"<{value.strip('<>')}>"
    return None


def msgid_list(value: str | None) -> list[str]:
    if not value:
        return []
    return [f"<{m}>" for m in _MSGID_RE.findall(value)]


_SURROGATES_RE = re.compile("[\udc80-\udcff]+")
_EW_CHARSET_RE = re.compile(r"=\?([^?*]+)(?:\*[^?]*)?\?[bBqQ]\?")


def _unescape_run(m: re.Match[str]) -> str:
    data = bytes(ord(c) - 0xDC00 for c in m.group(0))
    return _utf8_or_cp1252(data)


def unsurrogate(text: str) -> str:
    """Header text with the raw 8-bit bytes the parser kept as surrogate escapes (RFC 6532
    UTF-8 addresses, or a sender's unlabelled legacy bytes) turned into real characters:
    UTF-8 when they are UTF-8, else windows-1252. Without this, the text cannot even be
    encoded to be stored."""
    if not _SURROGATES_RE.search(text):
        return text
    return _SURROGATES_RE.sub(_unescape_run, text)


def _raw_header(msg: Message, name: str) -> str | None:
    try:
        for k, v in msg.raw_items():
            if k.lower() == name.lower():
                return str(v)
    except Exception:
        return None
    return None


def _superset_words(raw: str) -> str | None:
    """The header decoded again when one of its encoded-words names a charset that mail
    clients read as a wider one (`=?gb2312?B?...?=` holding GBK text); else None."""
    labels = _EW_CHARSET_RE.findall(raw)
    if not any(_codec(label) not in ("", label.lower()) for label in labels):
        return None
    try:
        chunks = decode_header(raw)
    except Exception:
        return None
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(_decode_bytes(chunk, charset))
    return "".join(out)


def _header(msg: Message, name: str) -> str | None:
    """A header as text with encoded-words decoded; never raises."""
    try:
        value = msg.get(name)
    except Exception:
        value = _raw_header(msg, name)
    if value is None:
        return None
    try:
        text = str(value)
    except Exception:
        return None
    raw = _raw_header(msg, name)
    if raw and "=?" in raw:
        text = _superset_words(raw) or text
    text = unsurrogate(text)
    return " ".join(text.split()) if text else text


def _headers_all(msg: Message, name: str) -> list[str]:
    try:
        values = msg.get_all(name) or []
    except Exception:
        return []
    out: list[str] = []
    for v in values:
        try:
            out.append(unsurrogate(str(v)))
        except Exception:
            continue
    return out


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header; never raises."""
    out: list[tuple[str, str]] = []
    for value in _headers_all(msg, name):
        try:
            addrs = getattr(msg.get(name), "addresses", None)
            if addrs:
                for a in addrs:
                    if isinstance(a, Address) and a.addr_spec and a.addr_spec != "<>":
                        out.append((a.display_name or "", a.addr_spec))
                continue
        except Exception:
            pass
        for disp, addr in getaddresses([value]):
            if addr:
                out.append((disp, addr))
    if any(_misdecoded(disp) for disp, _ in out):
        # a display name in an encoded-word whose charset label names a subset
        # (`=?gb2312?B?...?=` holding GBK): read the names again as the superset
        raw = _raw_header(msg, name)
        decoded = _superset_words(raw) if raw and "=?" in raw else None
        again = [(d, a) for d, a in getaddresses([decoded]) if a] if decoded else []
        if [unsurrogate(a) for _, a in again] == [unsurrogate(a) for _, a in out]:
            out = [(d, a) for (d, _), (_, a) in zip(again, out, strict=True)]
    return [(unsurrogate(d), unsurrogate(a)) for d, a in out]


def _misdecoded(text: str) -> bool:
    """What decoding with a too-narrow charset leaves: replacement characters, C1 controls,
    or the parser's surrogate escapes."""
    return any(c == "\ufffd" or "\x80" <= c <= "\x9f" or "\udc80" <= c <= "\udcff" for c in text)


def _decode_payload(part: Message) -> tuple[bytes, str]:
    """(raw decoded bytes, best-effort text) of a leaf part."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        data = payload.encode("utf-8", "replace") if isinstance(payload, str) else b""
    return data, _decode_bytes(data, _charset(part))


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return None


# Charset labels that mail clients (and browsers: the WHATWG Encoding Standard's label
# table, https://encoding.spec.whatwg.org/#names-and-labels) read as another, wider
# encoding: senders label a superset's text with the subset's name. Only labels that Python
# would read differently (or not at all) are listed; the others are looked up as they are.
_SUPERSET_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("utf-8", ("unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8")),
    (
        "cp1252",
        (
            *("ansi_x3.4-1968", "cp819", "csisolatin1", "ibm819", "iso-8859-1", "iso-ir-100"),
            *("iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1", "latin1"),
            *("latin-1", "windows-1252", "x-cp1252"),
        ),
    ),
    (
        "cp1254",
        (
            *("csisolatin5", "iso-8859-9", "iso-ir-148", "iso8859-9", "iso88599", "iso_8859-9"),
            *("iso_8859-9:1989", "l5", "latin5", "windows-1254", "x-cp1254"),
        ),
    ),
    (
        "cp874",
        ("dos-874", "iso-8859-11", "iso8859-11", "iso885911", "tis-620", "windows-874"),
    ),
    *((f"cp125{n}", (f"windows-125{n}", f"x-cp125{n}")) for n in (0, 1, 3, 5, 6, 7, 8)),
    (
        "gb18030",
        (
            *("chinese", "csgb2312", "csiso58gb231280", "gb2312", "gb_2312", "gb_2312-80"),
            *("gbk", "iso-ir-58", "x-gbk", "gb18030"),
        ),
    ),
    ("big5hkscs", ("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5")),
    (
        "cp932",
        (
            *("csshiftjis", "ms932", "ms_kanji", "shift-jis", "shift_jis", "sjis"),
            *("windows-31j", "x-sjis"),
        ),
    ),
    (
        "cp949",
        (
            *("cseuckr", "csksc56011987", "euc-kr", "iso-ir-149", "korean", "ks_c_5601-1987"),
            *("ks_c_5601-1989", "ksc5601", "ksc_5601", "windows-949"),
        ),
    ),
    ("iso8859-8", ("csiso88598i", "iso-8859-8-i", "logical", "iso-8859-8-e", "visual")),
    ("iso8859-6", ("iso-8859-6-e", "iso-8859-6-i", "csiso88596e", "csiso88596i")),
    ("koi8_u", ("koi8-ru", "koi8-u")),
    ("mac_cyrillic", ("x-mac-cyrillic", "x-mac-ukrainian")),
    ("mac_roman", ("csmacintosh", "mac", "macintosh", "x-mac-roman")),
)
SUPERSETS: dict[str, str] = {label: codec for codec, labels in _SUPERSET_GROUPS for label in labels}
# No usable label: sniff (ASCII, else UTF-8, else windows-1252). us-ascii is here too: a
# part labelled us-ascii with 8-bit bytes is nearly always UTF-8 or windows-1252 text.
_UNLABELLED = frozenset(
    ("", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "default", "7bit", "8bit")
)


def _codec(charset: str | None) -> str:
    """The codec to read text labelled `charset` with ('' when unlabelled)."""
    cs = (charset or "").strip().strip("\"'").lower()
    if cs in _UNLABELLED:
        return ""
    return SUPERSETS.get(cs, cs)


def _decode_bytes(data: bytes, charset: str | None) -> str:
    codec = _codec(charset)
    if not codec:
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            return _utf8_or_cp1252(data)
    try:
        return data.decode(codec)
    except LookupError:
        return _utf8_or_cp1252(data)  # a label nobody knows: sniff
    except UnicodeDecodeError:
        # a few bad bytes in a declared charset: replacement characters for those only,
        # never the whole part re-read as something else
        return data.decode(codec, errors="replace")


def _utf8_or_cp1252(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        try:
            name = part.get_param("name")  # type: ignore[assignment]
            if isinstance(name, tuple):
                name = name[2]
        except Exception:
            name = None
    if name:
        name = " ".join(unsurrogate(str(name)).split())
    return name or None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


# --------------------------------------------------------------------------------------
# HTML to text


_BLOCK_TAGS = frozenset(
    {
        *("p", "div", "br", "tr", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"),
        *("blockquote", "hr", "table", "pre", "section", "article", "header", "footer"),
        *("dd", "dt", "dl", "address", "center", "form", "fieldset"),
    }
)
_SKIP_TAGS = frozenset(("script", "style", "head", "title", "template", "noscript", "xml"))


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.href: str | None = None
        self.link_text: list[str] = []
        self.in_title = False
        self.title: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
            self.in_title = tag == "title"
            return
        if tag == "pre":
            self.pre += 1
        if tag in _BLOCK_TAGS:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        if tag in ("td", "th"):
            self.out.append(" ")
        if tag == "a":
            href = dict(attrs).get("href")
            self.href = href if href and href.startswith(("http://", "https://")) else None
            self.link_text = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
            self.in_title = False
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in ("p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "tr"):
            self.out.append("\n")
        if tag == "a" and self.href:
            shown = "".join(self.link_text).strip()
            if shown and shown != self.href and self.href not in shown:
                self.out.append(f" <{self.href}>")
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.skip:
            if self.in_title:
                self.title.append(data)
            return
        if not self.pre:
            data = re.sub(r"[ \t\r\n\f\v]+", " ", data)
        if self.href is not None:
            self.link_text.append(data)
        self.out.append(data)


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML fragment: blocks become lines, scripts and styles go."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        pass
    text = "".join(parser.out).replace("\xa0", " ")
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if not text and parser.title:
        # a document with nothing but a title still says something
        text = " ".join("".join(parser.title).split())
    return text


def sanitize_html(html: str) -> str:
    return nh3.clean(html)


# Elements that start the quoted history in an HTML reply (talon's html_quotations markers).
class _QuoteMarkerFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: tuple[int, int] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.found is not None:
            return
        a = {k.lower(): (v or "") for k, v in attrs}
        classes = a.get("class", "").lower().split()
        ident = a.get("id", "").lower()
        style = re.sub(r"\s+", "", a.get("style", "").lower())
        hit = (
            any(
                c in classes
                for c in ("gmail_quote", "gmail_extra", "yahoo_quoted", "moz-cite-prefix")
            )
            or "outlookmessageheader" in " ".join(classes)
            or ident
            in ("divrplyfwdmsg", "appendonsend", "stopspelling", "zwchr", "isforwardcontent")
            or (ident.startswith("yiv") and "quote" in ident)
            or a.get("data-marker") == "__quoted_text__"
            or tag == "blockquote"
            or (tag == "hr" and (ident in ("stopspelling", "zwchr") or "tabindex" in a))
            or (
                tag == "div"
                and "border-top" in style
                and "solid" in style
                and ("padding" in style or "border:none" in style)
            )
        )
        if hit:
            self.found = self.getpos()


def split_html_quote(html: str) -> tuple[str, str | None]:
    """(HTML before the first quote marker, the rest) — the rest is None without a marker."""
    finder = _QuoteMarkerFinder()
    try:
        finder.feed(html)
        finder.close()
    except Exception:
        return html, None
    if finder.found is None:
        return html, None
    line, col = finder.found
    offset = 0
    for _ in range(line - 1):
        nl = html.find("\n", offset)
        if nl < 0:
            return html, None
        offset = nl + 1
    offset += col
    return html[:offset], html[offset:]


# --------------------------------------------------------------------------------------
# Quote and signature splitting in plain text

_WROTE = (
    r"(wrote|writes|schrieb|a\s+écrit|escribió|scrisse|schreef|napisał|escreveu|"
    r"написал[аи]?|пишет|kirjoitti|skrev|írta|yazd\u0131|napsal|napísal)"
)
_ON_WROTE_RE = re.compile(
    r"^\s*(on|am|le|el|il|op|em|w dniu|den|dne|в)\b.{0,300}" + _WROTE + r"\s*:?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_ORIGINAL_RE = re.compile(
    r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|"
    r"mensaje original|исходное сообщение|oorspronkelijk bericht|messaggio originale|"
    r"reply message|original)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_HEADER_NAMES = (
    r"(from|sent|date|to|cc|subject|от|отправлено|дата|кому|тема|von|gesendet|datum|an|"
    r"betreff|de|envoyé|date|à|objet|para|enviado|asunto|van|verzonden|aan|onderwerp)"
)
_HEADER_LINE_RE = re.compile(r"^\s*\*?" + _HEADER_NAMES + r"\s*\*?\s*:", re.IGNORECASE)
_FROM_LINE_RE = re.compile(r"^\s*\*?(from|от|von|de|van)\s*\*?\s*:", re.IGNORECASE)
_UNDERSCORES_RE = re.compile(r"^\s*_{10,}\s*$")
_SIG_DELIM_RE = re.compile(r"^--\s*$")
_SENT_FROM_RE = re.compile(
    r"^\s*(sent (from|with|via) |get outlook for |envoyé de mon |von meinem .* gesendet|"
    r"enviado desde mi |отправлено \u0441 )",
    re.IGNORECASE,
)


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _blank(line: str) -> bool:
    return not line.strip()


def _header_block_at(lines: list[str], i: int) -> bool:
    """An Outlook-style 'From: ... Sent: ... To: ... Subject:' block starts at line i."""
    if not _FROM_LINE_RE.match(lines[i]) and not _HEADER_LINE_RE.match(lines[i]):
        return False
    names: set[str] = set()
    j = i
    seen = 0
    while j < len(lines) and seen < 6:
        line = lines[j]
        if _blank(line):
            break
        m = _HEADER_LINE_RE.match(line)
        if m:
            names.add(m.group(1).lower())
        seen += 1
        j += 1
    has_from = bool(names & {"from", "от", "von", "de", "van"})
    return has_from and len(names) >= 3


def _attribution_start(lines: list[str], i: int) -> int:
    """Index of the attribution line(s) ("... wrote:") just before line i, or i."""
    k = i - 1
    while k >= 0 and _blank(lines[k]):
        k -= 1
    if k < 0 or not lines[k].rstrip().endswith(":") or len(lines[k]) > 300:
        return i
    start = k
    chunk = lines[k]
    # the attribution may be wrapped over a few lines: walk up while it has no date yet or
    # the line above visibly continues onto the next one
    while start - 1 >= 0 and not _blank(lines[start - 1]) and k - start < 2:
        above = lines[start - 1].rstrip()
        if re.search(r"\d", chunk) and not above.endswith(("<", ",", '"', "(")):
            break
        start -= 1
        chunk = above + " " + chunk
    if not re.search(r"\d|@|" + _WROTE, chunk, re.IGNORECASE):
        return i
    return start


def _strip_trailing_attribution(text: str) -> tuple[str, str | None]:
    """Cut a last line like '26.06.2014, 14:41, "A" <a@b.c>:' that introduced a quote."""
    lines = text.rstrip().split("\n")
    if not lines or not lines[-1].rstrip().endswith(":"):
        return text, None
    start = _attribution_start([*lines, ">"], len(lines))
    if start >= len(lines):
        return text, None
    return "\n".join(lines[:start]), "\n".join(lines[start:]).strip()


def _on_wrote_at(lines: list[str], i: int) -> int:
    """Number of lines of an 'On <date>, <who> wrote:' attribution starting at i, or 0."""
    if not re.match(r"^\s*(on|am|le|el|il|op|em|w dniu|den|dne|в)\b", lines[i], re.IGNORECASE):
        return 0
    joined = lines[i]
    for n in range(1, 4):
        if _ON_WROTE_RE.match(joined) and joined.rstrip().endswith(":"):
            return n
        if i + n >= len(lines) or _blank(lines[i + n]):
            return 0
        joined = joined + " " + lines[i + n]
    return 0


def _split_signature(text: str) -> tuple[str, str | None]:
    lines = text.split("\n")
    # RFC 3676 delimiter "-- " (last one wins), within the last 15 lines
    for i in range(len(lines) - 1, max(-1, len(lines) - 16), -1):
        if _SIG_DELIM_RE.match(lines[i]) and i > 0:
            before = "\n".join(lines[:i]).strip()
            if before:
                return before, "\n".join(lines[i:]).strip()
    # "Sent from my iPhone" and friends among the last lines
    nonblank = [i for i, line in enumerate(lines) if not _blank(line)]
    for i in nonblank[-3:]:
        if _SENT_FROM_RE.match(lines[i]) and len(lines[i]) < 120:
            before = "\n".join(lines[:i]).strip()
            if before:
                return before, "\n".join(lines[i:]).strip()
    return text.strip(), None


def split_quote(text: str) -> SplitText:
    """Separate the new text from quoted history ("On ... wrote:", "-----Original
    Message-----", "From: ... Sent: ..." blocks, ">" lines) and from the signature."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    n = len(lines)
    cut: int | None = None  # everything from here on is quoted history
    region: tuple[int, int] | None = None  # an attribution + ">" block (start, end)

    for i in range(n):
        line = lines[i]
        if _ORIGINAL_RE.match(line) or (
            _UNDERSCORES_RE.match(line) and i + 1 < n and _header_block_at(lines, i + 1)
        ):
            cut = i
            break
        if _HEADER_LINE_RE.match(line) and _header_block_at(lines, i):
            cut = i
            break
        k = _on_wrote_at(lines, i)
        if k:
            end = i + k
            while end < n and (_is_quoted(lines[end]) or _blank(lines[end])):
                end += 1
            region = (i, end)
            break
        if _is_quoted(line):
            start = _attribution_start(lines, i)
            end = i
            while end < n and (_is_quoted(lines[end]) or _blank(lines[end])):
                end += 1
            region = (start, end)
            break

    if cut is None and region is not None:
        start, end = region
        before = "\n".join(lines[:start]).strip()
        after = "\n".join(lines[end:]).strip()
        if not after:
            cut = start
        elif not before and not any(_is_quoted(x) for x in lines[end:]):
            # bottom-posted reply: the quote comes first
            top_quote = "\n".join(lines[start:end]).strip()
            new, sig = _split_signature(after)
            return SplitText(new=new, signature=sig, quote=top_quote or None)
        else:
            # inline answers between quoted lines: nothing can be cut safely
            new, sig = _split_signature(text)
            return SplitText(new=new, signature=sig, quote=None)

    if cut is None:
        new, sig = _split_signature(text)
        return SplitText(new=new, signature=sig)
    head = "\n".join(lines[:cut])
    quote: str | None = "\n".join(lines[cut:]).strip() or None
    # a trailing attribution without ">" lines ("... <a@b.c>:") belongs to the quote
    head, attribution = _strip_trailing_attribution(head)
    if attribution:
        quote = attribution + ("\n" + quote if quote else "")
    new, sig = _split_signature(head)
    if not new and sig is None:
        # nothing but quote: keep the whole thing rather than lose it
        return SplitText(new=text.strip(), signature=None, quote=None)
    return SplitText(new=new, signature=sig, quote=quote)


def split_html_reply(html: str) -> tuple[SplitText, str, bool]:
    """An HTML reply as (new text / signature / quote, sanitised HTML of the new part,
    whether an HTML quote marker was found). Without a marker the text rules decide."""
    head, rest = split_html_quote(html)
    text = html_to_text(head)
    if rest is None:
        return split_quote(text), sanitize_html(html), False
    quote = html_to_text(rest)
    text, attribution = _strip_trailing_attribution(text)
    if attribution:
        quote = attribution + "\n" + quote
    split = split_quote(text)
    split.quote = "\n".join(x for x in (split.quote, quote) if x) or None
    return split, sanitize_html(head), True


# --------------------------------------------------------------------------------------
# MIME walking


@dataclass(slots=True)
class _Body:
    text_chunks: list[str] = field(default_factory=list)
    html_chunks: list[str] = field(default_factory=list)
    from_html: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # MIME parts walked so far (MAX_PARTS at most)
    parts: int = 0


def _is_attachment(part: Message) -> bool:
    disp = _disposition(part)
    if disp == "attachment":
        return True
    ctype = _content_type(part)
    if ctype in ("text/plain", "text/html"):
        return _filename(part) is not None and disp != "inline"
    return True


def _add_attachment(part: Message, body: _Body, limit: int) -> None:
    ctype = _content_type(part)
    if ctype == "message/rfc822":
        try:
            inner = part.get_payload()
            sub = inner[0] if isinstance(inner, list) and inner else inner
            data = sub.as_bytes() if isinstance(sub, Message) else b""
        except Exception:
            data = b""
        name = _filename(part) or "forwarded-message.eml"
    else:
        data, _ = _decode_payload(part)
        name = _filename(part) or ("attachment" + _guess_ext(ctype))
    size = len(data)
    if size > limit:
        body.notes.append(
            f"attachment {name!r} ({ctype}, {size} bytes) is over the {limit}-byte limit: "
            "its content was not kept"
        )
        body.attachments.append(Attachment(name=name, content_type=ctype, size=size, data=None))
    else:
        body.attachments.append(Attachment(name=name, content_type=ctype, size=size, data=data))


def _guess_ext(ctype: str) -> str:
    import mimetypes

    return mimetypes.guess_extension(ctype) or ".bin"


def _walk(part: Message, body: _Body, limit: int, *, want_text: bool, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        body.notes.append(f"MIME nesting deeper than {MAX_DEPTH} levels was not read")
        return
    body.parts += 1
    if body.parts > MAX_PARTS:
        if body.parts == MAX_PARTS + 1:
            body.notes.append(
                f"the mail has more than {MAX_PARTS} MIME parts: the rest was not read"
            )
        return
    ctype = _content_type(part)
    if part.is_multipart() and ctype != "message/rfc822":
        try:
            children = [c for c in part.get_payload() if isinstance(c, Message)]
        except Exception:
            children = []
        if ctype == "multipart/alternative" and children:
            chosen = _choose_alternative(children)
            for c in children:
                if c is chosen:
                    _walk(c, body, limit, want_text=want_text, depth=depth + 1)
                elif c.is_multipart() or _disposition(c) == "attachment":
                    # e.g. the images of an HTML alternative (multipart/related)
                    _walk(c, body, limit, want_text=False, depth=depth + 1)
            html_child = _choose_alternative(children, prefer="html")
            if want_text and html_child is not chosen:
                _collect_html(html_child, body, depth + 1)
        else:
            for c in children:
                _walk(c, body, limit, want_text=want_text, depth=depth + 1)
        return
    if _is_attachment(part):
        _add_attachment(part, body, limit)
        return
    if not want_text:
        return
    _, text = _decode_payload(part)
    if ctype == "text/html":
        text, notes = cap_html(text)
        body.notes.extend(notes)
        body.html_chunks.append(text)
        body.text_chunks.append(html_to_text(text))
        if not body.text_chunks[:-1]:
            body.from_html = True
    else:
        body.text_chunks.append(text)


def _choose_alternative(children: list[Message], prefer: str = "plain") -> Message:
    order = ("text/plain", "multi", "text/html") if prefer == "plain" else ("text/html", "multi")
    for wanted in order:
        for c in children:
            ctype = _content_type(c)
            if wanted == "multi":
                if c.is_multipart() and ctype != "message/rfc822":
                    return c
            elif ctype == wanted and not _is_attachment(c):
                return c
    return children[0] if prefer == "plain" else children[-1]


def _collect_html(part: Message, body: _Body, depth: int) -> None:
    """The HTML alternative of a text/plain body (for the sanitised `html` field only)."""
    if depth > MAX_DEPTH or len(body.html_chunks) >= MAX_PARTS:
        return
    if part.is_multipart() and _content_type(part) != "message/rfc822":
        try:
            children = [c for c in part.get_payload() if isinstance(c, Message)]
        except Exception:
            return
        if _content_type(part) == "multipart/alternative" and children:
            _collect_html(_choose_alternative(children, prefer="html"), body, depth + 1)
        else:
            for c in children:
                _collect_html(c, body, depth + 1)
        return
    if _content_type(part) == "text/html" and not _is_attachment(part):
        html, notes = cap_html(_decode_payload(part)[1])
        body.notes.extend(notes)
        body.html_chunks.append(html)


# --------------------------------------------------------------------------------------
# Loop safety, threading data


def _plus_token(address: str, our_address: str) -> str | None:
    local, _, domain = our_address.lower().rpartition("@")
    m = re.fullmatch(
        re.escape(local) + r"\+(" + _TOKEN_CHARS + r")@" + re.escape(domain),
        address.strip().lower(),
    )
    if not m:
        return None
    # keep the token's own case from the address as written
    start = len(local) + 1
    return address.strip()[start : start + len(m.group(1))]


def _automated_reasons(msg: Message, our_address: str) -> list[str]:
    reasons: list[str] = []
    auto = (_header(msg, "Auto-Submitted") or "").strip().lower()
    if auto and not auto.startswith("no"):
        reasons.append(f"Auto-Submitted: {auto}")
    prec = (_header(msg, "Precedence") or "").strip().lower()
    if prec in ("bulk", "list", "junk", "auto_reply"):
        reasons.append(f"Precedence: {prec}")
    for name in (
        "X-Auto-Response-Suppress",
        "List-Id",
        "List-Unsubscribe",
        "X-Autoreply",
        "X-Autorespond",
        "X-Autogenerated",
    ):
        if _header(msg, name) is not None:
            reasons.append(name)
    ours = our_address.lower()
    local, _, domain = ours.rpartition("@")
    for loop in _headers_all(msg, "X-Loop"):
        low = loop.lower()
        if ours in low or re.search(re.escape(local) + r"\+[^@\s]*@" + re.escape(domain), low):
            reasons.append("X-Loop names our address")
            break
    for rp in _headers_all(msg, "Return-Path"):
        if rp.strip().replace(" ", "") in ("<>", ""):
            reasons.append("empty Return-Path")
            break
    return reasons


def is_our_message_id(message_id: str | None, id_domain: str | None) -> bool:
    if not message_id or not id_domain:
        return False
    inner = message_id.strip("<>")
    local, _, domain = inner.rpartition("@")
    return domain.lower() == id_domain.lower() and local.startswith(OUR_MESSAGE_ID_PREFIX)


# --------------------------------------------------------------------------------------
# Bounces


def _is_bounce(msg: Message) -> bool:
    try:
        return (
            _content_type(msg) == "multipart/report"
            and (msg.get_param("report-type") or "").lower() == "delivery-status"  # type: ignore[union-attr]
        )
    except Exception:
        return False


def _parse_bounce(msg: Message, raw: bytes, message_id: str | None, id_domain: str) -> BounceReport:
    report = BounceReport(external_id="", raw=raw, message_id=message_id)
    report.subject = _header(msg, "Subject")
    from_ = _addresses(msg, "From")
    report.from_address = from_[0][1] if from_ else None
    report.external_id = external_id_of(message_id, report.from_address, _header(msg, "Date"), raw)
    texts: list[str] = []
    for part in itertools.islice(msg.walk(), MAX_PARTS):
        ctype = _content_type(part)
        try:
            if ctype == "message/delivery-status":
                _read_dsn(part, report)
            elif ctype in ("message/rfc822", "message/rfc822-headers", "text/rfc822-headers"):
                if report.original_message_id is None:
                    report.original_message_id = _original_id(part)
            elif ctype == "text/plain" and not texts:
                texts.append(_decode_payload(part)[1])
        except Exception as exc:
            report.defects.append(f"{ctype}: {exc.__class__.__name__}")
    report.text = "\n".join(texts).strip()
    report.ours = is_our_message_id(report.original_message_id, id_domain)
    return report


def _read_dsn(part: Message, report: BounceReport) -> None:
    blocks: list[Message] = []
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [b for b in payload if isinstance(b, Message)]
    else:
        text = payload if isinstance(payload, str) else _decode_payload(part)[1]
        for chunk in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
            if chunk.strip():
                blocks.append(HeaderParser(policy=policy.compat32).parsestr(chunk.strip() + "\n"))
    # one block per recipient (the first is the per-message block): the first failed
    # recipient decides, else the first recipient with an Action
    chosen: Message | None = None
    for block in blocks:
        action = str(block.get("Action") or "").strip().lower()
        if not action:
            continue
        if chosen is None or (action == "failed" and report.action != "failed"):
            chosen = block
            report.action = action
    for block in ([chosen] if chosen is not None else []) + blocks:
        status = block.get("Status")
        if status and report.status is None:
            report.status = " ".join(str(status).split())
        diag = block.get("Diagnostic-Code")
        if diag and report.diagnostic is None:
            d = " ".join(str(diag).split())
            d = re.sub(r"^(smtp|x-[\w-]+)\s*;\s*", "", d, flags=re.IGNORECASE)
            report.diagnostic = d
        rcpt = block.get("Final-Recipient") or block.get("Original-Recipient")
        if rcpt and report.recipient is None:
            report.recipient = str(rcpt).split(";", 1)[-1].strip()


def _original_id(part: Message) -> str | None:
    ctype = _content_type(part)
    if ctype == "message/rfc822":
        inner = part.get_payload()
        sub = inner[0] if isinstance(inner, list) and inner else inner
        if isinstance(sub, Message):
            return normalize_msgid(sub.get("Message-ID"))
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return normalize_msgid(payload[0].get("Message-ID"))
    text = payload if isinstance(payload, str) else _decode_payload(part)[1]
    headers = HeaderParser(policy=policy.compat32).parsestr(text)
    return normalize_msgid(headers.get("Message-ID"))


# --------------------------------------------------------------------------------------
# The entry point


def parse_email(
    raw: bytes,
    *,
    max_attachment_bytes: int,
    our_address: str,
    message_id_domain: str | None = None,
) -> ParsedEmail | BounceReport:
    """Parse one message. Never raises; see `ParsedEmail.defects` for what went wrong."""
    to_parse, address_counts, cap_notes = cap_headers(raw)
    try:
        msg: Message = BytesParser(policy=_PARSE_POLICY).parsebytes(to_parse)
    except Exception as exc:  # e.g. RecursionError: multiparts nested a thousand deep
        text = _utf8_or_cp1252(raw)
        return ParsedEmail(
            external_id=raw_hash_id(raw),
            raw=raw,
            text=text,
            full_text=text,
            defects=[f"unparseable: {exc.__class__.__name__}"],
            notes=cap_notes,
            address_counts=address_counts,
        )

    message_id = normalize_msgid(_header(msg, "Message-ID"))
    id_domain = (message_id_domain or our_address.rpartition("@")[2]).lower()

    if _is_bounce(msg):
        return _parse_bounce(msg, raw, message_id, id_domain)

    p = ParsedEmail(external_id="", raw=raw, message_id=message_id)
    p.address_counts = address_counts
    p.notes.extend(cap_notes)
    with contextlib.suppress(Exception):
        p.defects.extend(d.__class__.__name__ for d in getattr(msg, "defects", []))

    _read_headers(msg, p, our_address, message_id_domain)
    p.external_id = external_id_of(
        message_id, p.from_address or p.reply_to, _header(msg, "Date"), raw
    )

    body = _Body()
    try:
        _walk(msg, body, max_attachment_bytes, want_text=True)
    except Exception as exc:
        p.defects.append(f"body: {exc.__class__.__name__}")
        if not body.text_chunks:
            body.text_chunks.append(_fallback_body(raw))
    p.attachments = body.attachments
    p.notes.extend(body.notes)

    full = "\n\n".join(c.strip("\n") for c in body.text_chunks if c.strip())
    p.full_text = full.strip()
    html_new: str | None = None
    if body.html_chunks:
        whole_html = "\n".join(body.html_chunks)
        try:
            html_split, html_new, cut = split_html_reply(whole_html)
        except Exception:
            html_split, html_new, cut = None, _safe_sanitize(whole_html), False
        if body.from_html and cut and html_split is not None and html_split.new:
            # an HTML-only reply: the HTML quote markers decide what is new
            p.text = html_split.new
            p.signature = html_split.signature
            p.quote = html_split.quote
        p.html = html_new
    if not p.text:
        split = split_quote(p.full_text)
        p.text = split.new
        p.signature = split.signature
        p.quote = split.quote
    return p


def _safe_sanitize(html: str) -> str | None:
    try:
        return sanitize_html(html)
    except Exception:
        return None


def _fallback_body(raw: bytes) -> str:
    _, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        _, sep, rest = raw.partition(b"\n\n")
    return _utf8_or_cp1252(rest if sep else raw)


def _read_headers(
    msg: Message, p: ParsedEmail, our_address: str, message_id_domain: str | None
) -> None:
    p.subject = _header(msg, "Subject")
    froms = _addresses(msg, "From")
    if froms:
        p.from_name, p.from_address = froms[0][0] or None, froms[0][1]
    else:
        raw_from = _header(msg, "From")
        if raw_from:
            name, addr = parseaddr(raw_from)
            p.from_name, p.from_address = name or None, addr or None
    reply = _addresses(msg, "Reply-To")
    p.reply_to = reply[0][1] if reply else None
    p.to = [a for _, a in _addresses(msg, "To")]
    p.cc = [a for _, a in _addresses(msg, "Cc")]
    date = _header(msg, "Date")
    if date:
        try:
            p.date = parsedate_to_datetime(date)
        except Exception:
            p.defects.append("unreadable Date")

    refs: dict[str, None] = {}
    for name in ("In-Reply-To", "References"):
        for value in _headers_all(msg, name):
            refs.update(dict.fromkeys(msgid_list(value)))
    ids = list(refs)
    if len(ids) > MAX_REFS:
        # the thread's root and the latest messages are what threading can match
        ids = ids[:10] + ids[-(MAX_REFS - 10) :]
        p.notes.append(f"{len(refs)} thread references: only {MAX_REFS} were read")
    p.thread_refs = ids

    token: str | None = None
    for name in ("To", "Cc", "Delivered-To", "X-Original-To"):
        for _, addr in _addresses(msg, name):
            token = _plus_token(addr, our_address)
            if token:
                break
        if token:
            break
    if token is None and p.subject:
        m = _SUBJECT_TAG_RE.search(p.subject)
        if m:
            token = m.group(1)
    p.thread_token = token

    p.automated_reasons = _automated_reasons(msg, our_address)
    p.automated = bool(p.automated_reasons)

    ours = our_address.lower()
    local, _, domain = ours.rpartition("@")
    from_addr = (p.from_address or "").lower()
    if from_addr == ours or re.fullmatch(
        re.escape(local) + r"\+[^@]*@" + re.escape(domain), from_addr
    ):
        p.own = True
    if is_our_message_id(p.message_id, message_id_domain or domain):
        p.own = True


# --------------------------------------------------------------------------------------
# To the core's vocabulary


def to_inbound(p: ParsedEmail) -> InboundMessage:
    metadata: dict[str, Any] = {}
    if p.quote:
        metadata["quoted"] = p.full_text
        metadata["quote"] = p.quote
    if p.signature:
        metadata["signature"] = p.signature
    if p.to:
        metadata["to"] = p.to
    if p.cc:
        metadata["cc"] = p.cc
    if p.reply_to and p.reply_to.lower() != (p.from_address or "").lower():
        metadata["reply_to"] = p.reply_to
    if p.automated_reasons:
        metadata["automated_reasons"] = p.automated_reasons
    if p.notes:
        metadata["notes"] = p.notes
    if p.address_counts:
        metadata["address_counts"] = p.address_counts
    if p.defects:
        metadata["defects"] = p.defects
    sender = p.from_address or p.reply_to
    if not sender:
        sender = "unknown@invalid"
        metadata.setdefault("notes", []).append("the message has no readable From address")
    return InboundMessage(
        external_id=p.external_id,
        sender=Identity("email", sender),
        text=p.text,
        sender_name=p.from_name,
        html=p.html,
        subject=p.subject,
        attachments=p.attachments,
        thread_refs=p.thread_refs,
        thread_token=p.thread_token,
        provider_message_id=p.message_id,
        automated=p.automated,
        sent_at=p.date,
        raw=p.raw,
        raw_type="message/rfc822",
        metadata=metadata,
    )


def bounce_to_inbound(b: BounceReport) -> InboundMessage:
    """A delivery report that fails none of our messages (about mail we never sent, or
    saying `delayed`, `relayed`, `expanded`): still shown, flagged as automated."""
    metadata: dict[str, Any] = {
        "automated_reasons": ["delivery status notification"],
        "bounce": b.reason,
    }
    if b.action:
        metadata["dsn_action"] = b.action
    if b.original_message_id:
        metadata["about"] = b.original_message_id
    if b.recipient:
        metadata["recipient"] = b.recipient
    if b.defects:
        metadata["defects"] = b.defects
    # what an agent reads: the report's own words, then the machine-readable verdict
    verdict = "Delivery status" + (f" for {b.recipient}" if b.recipient else "")
    verdict += f": {b.action or 'unknown'}"
    if b.status or b.diagnostic:
        verdict += f" ({b.reason})"
    text = "\n\n".join(t for t in (b.text, verdict) if t)
    return InboundMessage(
        external_id=b.external_id,
        sender=Identity("email", b.from_address or "mailer-daemon@invalid"),
        text=text,
        subject=b.subject,
        provider_message_id=b.message_id,
        automated=True,
        raw=b.raw,
        raw_type="message/rfc822",
        metadata=metadata,
    )


def to_event(
    parsed: ParsedEmail | BounceReport,
) -> InboundMessage | DeliveryReceipt:
    """What to hand to `ctx.submit` for a parsed message (callers skip `own` mail first).

    A delivery report about one of our messages becomes a receipt (`failed` or
    `delivered`); every other report becomes an automated message."""
    if isinstance(parsed, BounceReport):
        if parsed.ours and parsed.original_message_id:
            if parsed.failed:
                return DeliveryReceipt(
                    provider_message_id=parsed.original_message_id,
                    status="failed",
                    reason=parsed.reason,
                )
            if parsed.action == "delivered":
                return DeliveryReceipt(
                    provider_message_id=parsed.original_message_id,
                    status="delivered",
                )
        return bounce_to_inbound(parsed)
    return to_inbound(parsed)


def html_escape(text: str) -> str:
    return html_lib.escape(text)
