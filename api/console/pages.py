"""The operator console's pages (issue: the operator console), served by `jpki serve` under
``/console``: server-rendered HTML forms, no script at all, usable with the keyboard alone.

Every page goes through the same services and the same authorisation table as the REST API
(jpki.access.authz), as the signed-in person's principal (jpki.access.console_accounts): there is
no second path to the data. Security, by OWASP's session and CSRF cheat sheets:
- the session cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/console`` and ``Secure``
  (configurable for plain HTTP on one's own machine: ``JPKI_CONSOLE_SECURE_COOKIES=false``);
- every form carries a CSRF token — the session's own once signed in, before that a random
  value also set as a cookie (double submit) — and a POST without the right one changes nothing;
- every answer has a Content-Security-Policy that allows no script, no inline style and nothing
  from another host, and is not cached or framed.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from api.console.i18n import choose, translator
from api.problems import STATUS
from jpki.access.console_accounts import ConsoleAccounts, SignIn
from jpki.errors import (
    AuthThrottled,
    Category,
    ConsoleLoginFailed,
    ConsoleSessionEnded,
    InvalidInput,
    JpkiError,
    RetryLater,
)

SESSION_COOKIE = "jpki_console"
FORM_COOKIE = "jpki_console_form"  # the double-submit token of the sign-in forms
LANG_COOKIE = "jpki_lang"
MAX_FORM_FIELDS = 16
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}

router = APIRouter(prefix="/console", include_in_schema=False)
static = StaticFiles(packages=[("api.console", "static")])
_templates = Environment(loader=PackageLoader("api.console", "templates"),
                         autoescape=select_autoescape(default=True), auto_reload=False)


class CsrfRefused(JpkiError):
    code = "console.csrf"
    category = Category.FORBIDDEN
    title = "The form's token is missing or wrong"


# --- plumbing --------------------------------------------------------------------------------


def _console(request: Request) -> ConsoleAccounts:
    accounts: ConsoleAccounts = request.app.state.services.console
    return accounts


def _secure(request: Request) -> bool:
    return bool(request.app.state.services.settings.console_secure_cookies)


def language_of(request: Request) -> str:
    return choose(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def render(request: Request, template: str, status: int = 200, *,
            session: SignIn | None = None, **context: Any) -> HTMLResponse:
    language = language_of(request)
    other = "en" if language == "ja" else "ja"
    html = _templates.get_template(template).render(
        t=translator(language), lang=language, other=other,
        switch=_switch_url(request, other), session=session, **context)
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if request.query_params.get("lang") == language:
        response.set_cookie(LANG_COOKIE, language, max_age=365 * 86400, path="/console",
                            samesite="strict", secure=_secure(request), httponly=True)
    return response


def _switch_url(request: Request, language: str) -> str:
    """This page in ``language``: the same address for a page one can GET again, the home
    page after a form was POSTed."""
    if request.method != "GET":
        return f"/console/?lang={language}"
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return f"{request.url.path}?{urlencode([*query, ('lang', language)])}"


def redirect(request: Request, to: str) -> RedirectResponse:
    # 303: the browser follows with a GET (RFC 9110 §15.4.4), so a reload resends nothing.
    return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)


def _set_session(request: Request, response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, path="/console", httponly=True,
                        samesite="strict", secure=_secure(request))


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as single values (the body's size is
    bounded before this, api.limits). Anything else is refused."""
    if request.headers.get("content-type", "").split(";")[0].strip() != \
            "application/x-www-form-urlencoded":
        raise InvalidInput("a form is sent as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True,
                          strict_parsing=False, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the form cannot be read") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise InvalidInput("a form field is given twice")
        form[key] = value
    return form


def typed_date(value: str) -> date:
    """A date as people type it at a keyboard: ``19900102`` or ``1990-01-02``."""
    text = value.strip()
    if len(text) == 8 and text.isascii() and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput("a date is YYYYMMDD or YYYY-MM-DD",
                           field="date") from exc


def _same(given: str | None, expected: str | None) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(
        str(given).encode(), str(expected).encode())


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _session(request: Request) -> SignIn:
    return await run_in_threadpool(_console(request).current,
                                   request.cookies.get(SESSION_COOKIE))


def _error_page(request: Request, exc: JpkiError, session: SignIn | None) -> Response:
    if isinstance(exc, ConsoleSessionEnded):
        response: Response = redirect(request, "/console/login?ended=1")
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response
    key = {Category.FORBIDDEN: "error.forbidden", Category.NOT_FOUND: "error.not_found",
           Category.INVALID_INPUT: "error.invalid"}.get(exc.category, "error.other")
    if isinstance(exc, CsrfRefused):
        key = "error.csrf"
    elif exc.code == "dv.second_person_required":
        key = "error.second_person"
    return render(request, "error.html", STATUS.get(exc.category, 500), session=session,
                   message_key=key)


Page = Callable[[Request, SignIn], Awaitable[Response]]


async def signed_in(request: Request, page: Page, *, form_post: bool = False) -> Response:
    """Run ``page`` for the signed-in person, or send them to sign in; a POST must carry the
    session's CSRF token. Domain refusals become the error page with the API's status."""
    session: SignIn | None = None
    try:
        session = await _session(request)
        if form_post:
            form = await _form(request)
            if not _same(form.get("csrf"), session.csrf):
                raise CsrfRefused()
            request.state.form = form
        return await page(request, session)
    except JpkiError as exc:
        return _error_page(request, exc, session)


# --- signing in and out ---------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)
    message = "session.ended" if request.query_params.get("ended") else None
    response = render(request, "login.html", csrf=token, message_key=message)
    response.set_cookie(FORM_COOKIE, token, path="/console", httponly=True, samesite="strict",
                        secure=_secure(request))
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    try:
        form = await _form(request)
        if not _same(form.get("csrf"), request.cookies.get(FORM_COOKIE)):
            raise CsrfRefused()
        signed = await run_in_threadpool(_console(request).begin, form.get("username", ""),
                                         form.get("password", ""), _address(request))
    except ConsoleLoginFailed:
        return render(request, "login.html", 401, csrf=request.cookies.get(FORM_COOKIE),
                       message_key="login.failed")
    except AuthThrottled as exc:
        return _throttled(request, exc)
    except RetryLater as exc:  # the password checks are all busy
        response = render(request, "login.html", 503, csrf=request.cookies.get(FORM_COOKIE),
                           message_key="login.busy")
        response.headers["retry-after"] = str(exc.retry_after)
        return response
    except JpkiError as exc:
        return _error_page(request, exc, None)
    moved = redirect(request, "/console/login/code")
    _set_session(request, moved, signed.token)
    return moved


def _throttled(request: Request, exc: AuthThrottled) -> Response:
    response = render(request, "login.html", 429, csrf=request.cookies.get(FORM_COOKIE),
                       message_key="login.throttled", seconds=exc.retry_after)
    response.headers["retry-after"] = str(exc.retry_after)
    return response


@router.get("/login/code")
async def code_page(request: Request) -> Response:
    if not request.cookies.get(SESSION_COOKIE) or not request.cookies.get(FORM_COOKIE):
        return redirect(request, "/console/login")
    return render(request, "code.html", csrf=request.cookies.get(FORM_COOKIE))


@router.post("/login/code")
async def code(request: Request) -> Response:
    try:
        form = await _form(request)
        if not _same(form.get("csrf"), request.cookies.get(FORM_COOKIE)):
            raise CsrfRefused()
        signed = await run_in_threadpool(
            _console(request).second_factor, request.cookies.get(SESSION_COOKIE) or "",
            form.get("code", "").strip(), _address(request))
    except ConsoleLoginFailed:
        response = render(request, "login.html", 401, csrf=request.cookies.get(FORM_COOKIE),
                           message_key="login.failed")
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response
    except AuthThrottled as exc:
        return _throttled(request, exc)
    except JpkiError as exc:
        return _error_page(request, exc, None)
    home = redirect(request, "/console/")
    _set_session(request, home, signed.token)
    home.delete_cookie(FORM_COOKIE, path="/console")
    return home


@router.post("/logout")
async def logout(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        await run_in_threadpool(_console(request).end, session.token)
        response = redirect(request, "/console/login")
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    return await signed_in(request, page, form_post=True)


# --- pages ----------------------------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    async def page(request: Request, session: SignIn) -> Response:
        return render(request, "home.html", session=session)

    if not request.cookies.get(SESSION_COOKIE):
        return redirect(request, "/console/login")
    return await signed_in(request, page)
