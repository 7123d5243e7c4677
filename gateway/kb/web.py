"""HTTP for the knowledge base (issue 15).

GET /v1/kb/search?q=&lang=&limit=   ranked articles with highlighted snippets. Without a
    token: public articles only, `knowledge_base.search_per_minute` per client address
    (429 beyond); with an admin, agent or integration token: internal articles too.
GET /help/                          to the index in the reader's language (Accept-Language)
GET /help/{lang}/?q=                the public articles of a language, or a search in them
                                    (searches limited as the anonymous API's)
GET /help/{lang}/{slug}             one public article as sanitised HTML
"""

from __future__ import annotations

import collections
import html
import time
from functools import lru_cache

import nh3
from aiohttp import web
from pydantic import BaseModel

from connectors.http import ApiError, client_key, fail
from gateway.api.common import authenticate, gateway_of, int_param
from gateway.i18n import Texts, primary
from gateway.kb.articles import Article
from gateway.kb.search import KnowledgeBase
from gateway.kb.text import LANGUAGES

MAX_QUERY = 200
_LANGUAGE_NAMES = {"de": "Deutsch", "en": "English"}


class KbHitOut(BaseModel):
    slug: str
    language: str
    title: str
    title_html: str
    snippet_html: str
    url: str | None
    audience: str
    tags: list[str]
    score: float


class KbSearchOut(BaseModel):
    query: str
    language: str | None
    items: list[KbHitOut]


def knowledge_base(request: web.Request) -> KnowledgeBase:
    kb = gateway_of(request).loaded.kb
    if kb is None:
        fail(404, "not_found", "no knowledge base is configured (knowledge_base: in the config)")
    return kb


class SearchLimiter:
    """Anonymous searches per client address and minute (a sliding window)."""

    def __init__(self) -> None:
        self._seen: dict[str, collections.deque[float]] = {}
        self._swept = time.monotonic()

    def allow(self, client: str, per_minute: int) -> float | None:
        """None when allowed, else the seconds to wait."""
        now = time.monotonic()
        if now - self._swept > 60:
            self._seen = {k: w for k, w in self._seen.items() if w and now - w[-1] < 60}
            self._swept = now
        window = self._seen.setdefault(client, collections.deque())
        while window and now - window[0] >= 60:
            window.popleft()
        if len(window) >= per_minute:
            return 60 - (now - window[0])
        window.append(now)
        return None


LIMITER: web.AppKey[SearchLimiter] = web.AppKey("kb_search_limiter")


def _limited(request: web.Request) -> float | None:
    """An anonymous search: None when allowed, else the seconds to wait."""
    cfg = gateway_of(request).config.knowledge_base
    per_minute = cfg.search_per_minute if cfg is not None else 60
    return request.app[LIMITER].allow(client_key(request.remote), per_minute)


async def search(request: web.Request) -> web.Response:
    kb = knowledge_base(request)
    internal = False
    if "Authorization" in request.headers:
        principal = authenticate(request)
        internal = principal.role in ("admin", "agent", "integration")
    else:
        wait = _limited(request)
        if wait is not None:
            error = ApiError(429, "rate_limited", "too many searches; try again shortly")
            error.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            raise error
    query = request.query.get("q", "").strip()
    if not query:
        fail(400, "invalid_parameter", "q (the search text) is required")
    if len(query) > MAX_QUERY:
        fail(400, "invalid_parameter", f"q is at most {MAX_QUERY} characters")
    lang = request.query.get("lang")
    if lang is not None and lang not in LANGUAGES:
        fail(400, "invalid_parameter", "lang must be de or en")
    limit = int_param(request, "limit", 5, 1, 20)
    hits = kb.search(query, lang, internal=internal, limit=limit)
    return web.json_response(
        {"query": query, "language": lang, "items": [h.to_api() for h in hits]}
    )


# --- the help pages ------------------------------------------------------------------------
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
    "color:#1c2330;line-height:1.55}header{display:flex;justify-content:space-between;"
    "align-items:baseline;gap:1rem;flex-wrap:wrap}nav a{margin-left:.6rem}a{color:#1f5fbf}"
    "form{display:flex;gap:.5rem;margin:1rem 0}input[type=search]{flex:1;font:inherit;"
    "padding:.45rem .6rem}button{font:inherit;padding:.45rem 1rem}ul.articles{padding:0;"
    "list-style:none}ul.articles li{margin:.8rem 0}.snippet{color:#4a5568;margin:.2rem 0 0}"
    "mark{background:#fff3a3;padding:0 .1em}article h1{margin-top:1.2rem}"
)


@lru_cache(maxsize=512)
def render_markdown(body: str) -> str:
    """An article's Markdown as HTML, sanitised (no script, no event handler, no style)."""
    import markdown  # on first use: a gateway without articles does not load it

    raw = markdown.markdown(body, extensions=["extra", "sane_lists"], output_format="html")
    return nh3.clean(raw)


def _texts(request: web.Request) -> Texts:
    return gateway_of(request).texts


def _page(lang: str, title: str, body: str, texts: Texts, status: int = 200) -> web.Response:
    switch = " ".join(
        f'<a href="/help/{code}/" hreflang="{code}" lang="{code}">{_LANGUAGE_NAMES[code]}</a>'
        for code in LANGUAGES
        if code != lang
    )
    home = html.escape(texts.text("kb.help.title", lang))
    doc = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<header><a href="/help/{lang}/" class="home"><strong>{home}</strong></a>'
        f"<nav>{switch}</nav></header><main>{body}</main></body></html>"
    )
    return web.Response(text=doc, status=status, headers=_HEADERS)


def _search_form(lang: str, texts: Texts, query: str = "") -> str:
    label = html.escape(texts.text("kb.help.search_label", lang))
    button = html.escape(texts.text("kb.help.search", lang))
    return (
        f'<form method="get" action="/help/{lang}/" role="search">'
        f'<input type="search" name="q" value="{html.escape(query)}" aria-label="{label}" '
        f'placeholder="{label}" maxlength="{MAX_QUERY}"><button type="submit">{button}</button>'
        "</form>"
    )


def _item(article: Article, title_html: str, snippet_html: str) -> str:
    return (
        f'<li><a href="{article.url()}">{title_html}</a><p class="snippet">{snippet_html}</p></li>'
    )


def _language(request: web.Request) -> str:
    kb = knowledge_base(request)
    for part in request.headers.get("Accept-Language", "").split(","):
        found = primary(part.split(";", 1)[0])
        if found is not None:
            return found
    return kb.default_language


async def help_root(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"/help/{_language(request)}/")


def _lang_of(request: web.Request) -> str:
    lang = request.match_info["lang"]
    if lang not in LANGUAGES:
        raise web.HTTPNotFound()
    return lang


async def help_index(request: web.Request) -> web.Response:
    kb = knowledge_base(request)
    lang, texts = _lang_of(request), _texts(request)
    query = request.query.get("q", "").strip()[:MAX_QUERY]
    title = texts.text("kb.help.title", lang)
    parts = [f"<h1>{html.escape(title)}</h1>", _search_form(lang, texts, query)]
    if query:
        wait = _limited(request)
        if wait is not None:
            raise web.HTTPTooManyRequests(headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        hits = kb.search(query, lang, limit=10)
        parts.append(f"<h2>{html.escape(texts.text('kb.help.results', lang))}</h2>")
        if hits:
            items = "".join(_item(h.article, h.title_html, h.snippet_html) for h in hits)
            parts.append(f'<ul class="articles results">{items}</ul>')
        else:
            parts.append(
                f'<p class="empty">{html.escape(texts.text("kb.help.no_results", lang))}</p>'
            )
        parts.append(
            f'<p><a href="/help/{lang}/">{html.escape(texts.text("kb.help.all_articles", lang))}</a></p>'
        )
    else:
        parts.append(f"<p>{html.escape(texts.text('kb.help.intro', lang))}</p>")
        items = "".join(
            _item(a, html.escape(a.title), "") for a in kb.listing(lang, public_only=True)
        )
        parts.append(f'<ul class="articles">{items}</ul>')
    return _page(lang, title, "".join(parts), texts)


async def help_article(request: web.Request) -> web.Response:
    kb = knowledge_base(request)
    lang, texts = _lang_of(request), _texts(request)
    article = kb.get(lang, request.match_info["slug"])
    if article is None or not article.public:
        text = texts.text("kb.help.not_found", lang)
        back = html.escape(texts.text("kb.help.all_articles", lang))
        body = f'<p>{html.escape(text)}</p><p><a href="/help/{lang}/">{back}</a></p>'
        return _page(lang, text, body, texts, 404)
    body = (
        f"{_search_form(lang, texts)}<article><h1>{html.escape(article.title)}</h1>"
        f"{render_markdown(article.body)}</article>"
        f'<p><a href="/help/{lang}/">{html.escape(texts.text("kb.help.all_articles", lang))}</a></p>'
    )
    return _page(lang, article.title, body, texts)


def add_routes(app: web.Application) -> None:
    app[LIMITER] = SearchLimiter()
    r = app.router
    r.add_get("/v1/kb/search", search)
    r.add_get("/help", help_root)
    r.add_get("/help/", help_root)
    r.add_get("/help/{lang}/", help_index)
    r.add_get("/help/{lang}/{slug}", help_article)
