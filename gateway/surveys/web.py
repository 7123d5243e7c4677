"""HTTP for surveys: the customer's landing pages (email links) and the admin API.

Customers (no token; the signed link is the capability):
GET  /surveys/{token}?score=N   record the score (the first one counts), offer a comment box
POST /surveys/{token}           the comment (form field `comment`)
GET  /surveys/{token}/optout    no more surveys for this customer

API (bearer token):
GET  /v1/surveys?contact_id=&conversation_id=&kind=&limit=&cursor=   responses (admin)
GET  /v1/contacts/{id}/surveys   whether the contact gets surveys (admin, integration)
PUT  /v1/contacts/{id}/surveys   {"opted_out": bool}
PATCH /v1/contacts/{id}          {"attributes": {"language": "de", ...}} (null removes one)
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Annotated

from aiohttp import web
from pydantic import Field

from connectors.http import fail
from gateway.api.auth import require
from gateway.api.common import Body, authenticate, gateway_of, int_param, read_body
from gateway.clock import iso
from gateway.store.base import SURVEY_KINDS, NotFound, SurveyResponse, SurveyStore
from gateway.surveys.policy import read_score
from gateway.workspace.service import WorkspaceService

if TYPE_CHECKING:
    from gateway.surveys.service import Surveys

MAX_COMMENT = 4000


class OptOutBody(Body):
    opted_out: bool


class ContactPatchBody(Body):
    attributes: dict[
        Annotated[str, Field(min_length=1, max_length=64)],
        Annotated[str, Field(max_length=256)] | None,
    ] = Field(default_factory=dict, max_length=32)
    # Issue 14: the contact panel edits the display name too (null clears it).
    name: str | None = Field(None, max_length=200)


def _store(request: web.Request) -> SurveyStore:
    store = gateway_of(request).store
    if not isinstance(store, SurveyStore):
        fail(503, "unavailable", "this store keeps no surveys")
    return store


# --- the API -------------------------------------------------------------------------------
async def list_surveys(request: web.Request) -> web.Response:
    require(authenticate(request), "admin")
    kind = request.query.get("kind")
    if kind is not None and kind not in SURVEY_KINDS:
        fail(400, "invalid_parameter", "kind must be csat, nps or ces")
    items, cursor = await _store(request).survey_list(
        contact_id=request.query.get("contact_id"),
        conversation_id=request.query.get("conversation_id"),
        kind=kind,
        limit=int_param(request, "limit", 50, 1, 500),
        cursor=request.query.get("cursor"),
    )
    return web.json_response({"items": [i.to_api() for i in items], "next_cursor": cursor})


async def _optout_state(request: web.Request, contact_id: str) -> web.Response:
    at = await _store(request).survey_opted_out(contact_id)
    return web.json_response({"contact_id": contact_id, "opted_out": at is not None, "at": iso(at)})


async def get_optout(request: web.Request) -> web.Response:
    require(authenticate(request), "admin", "integration")
    return await _optout_state(request, request.match_info["id"])


async def set_optout(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin", "integration")
    body = await read_body(request, OptOutBody)
    contact_id = request.match_info["id"]
    await gateway_of(request).services.survey_optout(contact_id, body.opted_out, "api")
    return await _optout_state(request, contact_id)


async def patch_contact(request: web.Request) -> web.Response:
    principal = authenticate(request)
    require(principal, "admin", "integration", "agent", "supervisor")
    body = await read_body(request, ContactPatchBody)
    gw = gateway_of(request)
    # An agent edits the contacts it sees (issue 14: the console's contact panel).
    contact_id = (await gw.store.get_contact(request.match_info["id"], principal.scope)).id
    contact = await gw.services.set_contact_attributes(contact_id, dict(body.attributes))
    if "name" in body.model_fields_set:
        contact = await WorkspaceService(gw.services).rename(contact_id, body.name)
    return web.json_response(contact.to_api())


# --- the landing pages -----------------------------------------------------------------------
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _page(lang: str, title: str, body: str, status: int = 200) -> web.Response:
    doc = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
        "color:#1c2330}textarea{width:100%;min-height:6rem;font:inherit}"
        "button{font:inherit;padding:.5rem 1.2rem;margin-top:.5rem}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return web.Response(text=doc, status=status, headers=_HEADERS)


def _surveys(request: web.Request) -> Surveys:
    surveys = gateway_of(request).surveys
    if surveys is None:
        raise web.HTTPNotFound()
    return surveys


async def _resolve(request: web.Request) -> tuple[Surveys, SurveyResponse] | web.Response:
    surveys = _surveys(request)
    response_id = surveys.response_id(request.match_info["token"])
    default = surveys.texts.default
    if response_id is None:
        text = surveys.texts.text("survey.link_invalid", default)
        return _page(default, text, f"<p>{html.escape(text)}</p>", 403)
    try:
        response = await surveys.surveys.survey_get(response_id)
    except NotFound:
        text = surveys.texts.text("survey.link_invalid", default)
        return _page(default, text, f"<p>{html.escape(text)}</p>", 404)
    return surveys, response


def _thanks_page(surveys: Surveys, response: SurveyResponse, token: str) -> web.Response:
    t, lang = surveys.texts, response.language
    parts = [f"<h1>{html.escape(t.text('survey.thanks', lang))}</h1>"]
    if response.score is not None:
        parts.append(
            f'<p id="score">{html.escape(t.text("survey.recorded", lang, score=response.score))}</p>'
        )
    if response.answered_at is not None:  # the date as the customer writes it (Babel)
        when = t.datetime(response.answered_at, lang)
        parts.append(
            f'<p id="when">{html.escape(t.text("survey.answered_on", lang, date=when))}</p>'
        )
    if response.comment is not None:
        parts.append(f'<p id="done">{html.escape(t.text("survey.comment_thanks", lang))}</p>')
    elif surveys.config.comment and response.score is not None:
        parts.append(
            f'<form method="post" action="/surveys/{html.escape(token)}">'
            f'<label for="comment">{html.escape(t.text("survey.comment_prompt", lang))}</label>'
            f'<textarea id="comment" name="comment" maxlength="{MAX_COMMENT}"></textarea>'
            f'<button type="submit">{html.escape(t.text("survey.comment_submit", lang))}</button>'
            "</form>"
        )
    return _page(lang, t.text("survey.thanks", lang), "".join(parts))


async def landing(request: web.Request) -> web.Response:
    found = await _resolve(request)
    if isinstance(found, web.Response):
        return found
    surveys, response = found
    token = request.match_info["token"]
    raw = request.query.get("score")
    if raw is not None and response.score is None:
        score = read_score(raw, response.kind)
        if score is None:
            fail(400, "invalid_parameter", "score is out of range")
        if surveys.clock() > response.sent_at + surveys.config.answer_window:
            text = surveys.texts.text("survey.closed", response.language)
            return _page(response.language, text, f"<p>{html.escape(text)}</p>", 410)
        response, _ = await surveys.services.survey_answer(response.id, score, None, "link")
    return _thanks_page(surveys, response, token)


async def comment(request: web.Request) -> web.Response:
    found = await _resolve(request)
    if isinstance(found, web.Response):
        return found
    surveys, response = found
    if response.score is None:
        fail(409, "not_answered", "answer the question first")
    form = await request.post()
    text = str(form.get("comment") or "").strip()[:MAX_COMMENT]
    if text:
        response, _ = await surveys.services.survey_answer(response.id, None, text)
    return _thanks_page(surveys, response, request.match_info["token"])


async def optout(request: web.Request) -> web.Response:
    found = await _resolve(request)
    if isinstance(found, web.Response):
        return found
    surveys, response = found
    await surveys.services.survey_optout(response.contact_id, True, "link")
    text = surveys.texts.text("survey.optout_done", response.language)
    return _page(response.language, text, f'<p id="optout">{html.escape(text)}</p>')


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/surveys", list_surveys)
    r.add_get("/v1/contacts/{id}/surveys", get_optout)
    r.add_put("/v1/contacts/{id}/surveys", set_optout)
    r.add_patch("/v1/contacts/{id}", patch_contact)
    r.add_get("/surveys/{token}", landing)
    r.add_post("/surveys/{token}", comment)
    r.add_get("/surveys/{token}/optout", optout)
