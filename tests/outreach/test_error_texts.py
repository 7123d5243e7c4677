"""Every error code `POST /v1/conversations` can answer has a text in the console's "New
conversation" dialog, in English and German (`new.error.<code>` in
gateway/console/i18n.js); else the agent reads the server's English message. The codes
are read from the source, so a new refusal cannot be forgotten."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "gateway"
OUTREACH_SOURCES = [GATEWAY / "api" / "outreach.py", *sorted((GATEWAY / "outreach").glob("*.py"))]
# Answered by the shared paths the endpoint goes through: the body (read_body), a store
# that cannot be reached.
SHARED_CODES = {"validation_error", "payload_too_large", "unavailable"}
REFUSALS = {"Refusal", "OutreachRefused"}


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _literal(args: list[ast.expr], index: int) -> str | None:
    if len(args) > index:
        arg = args[index]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def codes_in(source: str) -> set[str]:
    """`fail(status, "code", …)`, `Refusal("code", …)`, `OutreachRefused("code", …)` and
    `….code = "code"` in `source`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            code = _literal(node.args, 1) if name == "fail" else None
            if name in REFUSALS:
                code = _literal(node.args, 0)
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant):
                        code = str(kw.value.value)
            if code is not None:
                found.add(code)
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and any(isinstance(t, ast.Attribute) and t.attr == "code" for t in node.targets)
        ):
            found.add(str(node.value.value))
    return found


def catalog(lang: str) -> set[str]:
    """The `new.error.*` codes of one language's block of gateway/console/i18n.js."""
    text = (GATEWAY / "console" / "i18n.js").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"^ {4}(en|de): \{\n(.*?)^ {4}\}", text, re.M | re.S))
    assert lang in blocks, f"no {lang} block in i18n.js"
    return set(re.findall(r'"new\.error\.(\w+)":', blocks[lang]))


def test_the_scan_finds_every_kind_of_code() -> None:
    source = (
        'fail(422, "a_code", "m")\nRefusal("b_code", "m")\n'
        'raise OutreachRefused("c_code", "m", status=403)\nself.code = "d_code"\n'
        'fail(refused.status, refused.code, "m")\n'
    )
    assert codes_in(source) == {"a_code", "b_code", "c_code", "d_code"}


def test_every_outreach_code_has_a_console_text_in_both_languages() -> None:
    codes = set(SHARED_CODES)
    for path in OUTREACH_SOURCES:
        codes |= codes_in(path.read_text(encoding="utf-8"))
    # The refusals of gateway/outreach/policy.py and store.py, the endpoint's own checks.
    assert {"channel_cannot_start", "unknown_contact", "queue_scope", "forbidden"} <= codes
    for lang in ("en", "de"):
        missing = sorted(codes - catalog(lang))
        assert not missing, f"gateway/console/i18n.js ({lang}) lacks new.error.{missing}"


def test_refusals_are_made_only_where_the_scan_reads() -> None:
    """A store backend raises the refusals gateway/outreach/store.py makes (so the codes
    stay where the check above reads them)."""
    for path in sorted(GATEWAY.rglob("*.py")):
        if path in OUTREACH_SOURCES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        made = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _name(node.func) in REFUSALS
        ]
        assert not made, f"{path.relative_to(ROOT)}:{made} makes a refusal outside outreach"
