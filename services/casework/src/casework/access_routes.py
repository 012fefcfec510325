"""The console's sign-in, sign-out, language switch, single sign-on, staff accounts and audit log pages."""

import base64
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from casework.access import (
    CSRF_REFUSED,
    LOGIN_PATH,
    PASSWORD_CHANGE_REQUIRED,
    PASSWORD_PATH,
    ConsoleRefusal,
    StaffAccess,
    access_of,
    client_address,
    csrf_matches,
    require,
    safe_next,
    wants_json,
)
from casework.accounts import Account, AccountProblem, EmailTaken, check_role, normalise_email
from casework.audit import ACTIONS, CSV_COLUMNS, AuditEntry, AuditQuery
from casework.i18n import LOCALE_COOKIE, LOCALES
from casework.oidc import STATE_MAX_AGE_SECONDS, OpenIdProvider, SingleSignOnRefused
from casework.roles import Permission, Role, StaffMember
from casework.web import render

router = APIRouter(tags=["console access"])

FormText = Annotated[str, Form()]
NO_STORE = {"Cache-Control": "no-store"}
AccountAdmin = Annotated[StaffMember, Depends(require(Permission.MANAGE_ACCOUNTS))]
AuditReader = Annotated[StaffMember, Depends(require(Permission.READ_AUDIT))]
AUDIT_PAGE_SIZE = 50
MAX_FILTER_LENGTH = 254


def install(app: FastAPI) -> None:
    """Add these routes and the handler that renders refusals (401, 403, 429) as console pages or JSON."""
    app.include_router(router)
    app.add_exception_handler(ConsoleRefusal, refusal_page)  # type: ignore[arg-type]


async def refusal_page(request: Request, refusal: ConsoleRefusal) -> Response:
    headers = dict(refusal.headers or {})
    if refusal.status_code == 303:
        return RedirectResponse(headers.pop("Location"), 303, headers=headers)
    if wants_json(request):
        return JSONResponse({"detail": refusal.reason}, refusal.status_code, headers=headers)
    status = refusal.status_code
    key = f"access.refused_{status}" if status in (400, 401, 404, 429) else "access.refused_403"
    if refusal.reason == CSRF_REFUSED:
        key = "access.refused_csrf"
    elif refusal.reason == PASSWORD_CHANGE_REQUIRED:
        key = "access.refused_password_change"
    response = render(request, "refused.html", {"message_key": key}, status_code=refusal.status_code)
    response.headers.update(headers)
    return response


# --- sign-in, sign-out, language


def shown_back(value: str, limit: int) -> str:
    """Input put back in a form after an error: printable characters only, and no more than the field takes."""
    return "".join(ch for ch in value[: limit * 2] if ch.isprintable())[:limit]


async def _anonymous_form_csrf(request: Request, presented: str) -> None:
    """A form before sign-in: its session's token if signed in, else the signed pre-session cookie's."""
    access = access_of(request)
    signed_in = await access.signed_in(request)
    if signed_in is not None:
        request.state.staff, session = signed_in
        request.state.csrf_token = session.csrf_token
        if csrf_matches(session.csrf_token, presented):
            return
    elif access.presession_matches(request, presented):
        request.state.csrf_token = presented
        return
    raise ConsoleRefusal(403, CSRF_REFUSED)


def _login_page(
    request: Request, *, status_code: int = 200, next_path: str = "", error: str | None = None, email: str = ""
) -> Response:
    access = access_of(request)
    token, new = access.presession_token(request)
    request.state.csrf_token = token
    context = {
        "next": safe_next(next_path),
        "error": error,
        "email": email,
        "oidc_enabled": access.settings.oidc_enabled,
    }
    response = render(request, "login.html", context, status_code=status_code)
    response.headers.update(NO_STORE)
    if new:
        access.set_presession_cookie(response, token)
    return response


@router.get("/console/login")
async def login_form(request: Request, next: str = "") -> Response:
    if await access_of(request).signed_in(request) is not None:
        return RedirectResponse(safe_next(next), 303)
    return _login_page(request, next_path=next)


@router.post("/console/login")
async def login(
    request: Request,
    email: FormText = "",
    password: FormText = "",
    csrf_token: FormText = "",
    next: FormText = "",
) -> Response:
    await _anonymous_form_csrf(request, csrf_token)
    access = access_of(request)
    echo = shown_back(email, 254)
    result = await access.sign_in(email, password, client_address(request))
    if result.problem == "throttled":
        response = _login_page(request, status_code=429, next_path=next, error="access.login_throttled", email=echo)
        response.headers["Retry-After"] = str(result.retry_after)
        return response
    if result.problem in ("email", "password"):
        error = f"access.login_bad_{result.problem}"
        return _login_page(request, status_code=400, next_path=next, error=error, email=echo)
    if result.token is None:
        return _login_page(request, status_code=401, next_path=next, error="access.login_refused", email=echo)
    await access.sign_out(request)  # a session the browser already had ends: one session per sign-in
    must_change = result.staff is not None and result.staff.must_change_password
    target = f"{PASSWORD_PATH}?next={quote(safe_next(next), safe='')}" if must_change else safe_next(next)
    response = RedirectResponse(target, 303)
    access.set_session_cookie(response, result.token)
    return response


@router.post("/console/logout")
async def logout(request: Request, csrf_token: FormText = "") -> Response:
    access = access_of(request)
    signed_in = await access.signed_in(request)
    response = RedirectResponse("/console/login", 303)
    if signed_in is None:
        access.clear_session_cookie(response)
        return response
    staff, session = signed_in
    if not csrf_matches(session.csrf_token, csrf_token or request.headers.get("X-CSRF-Token", "")):
        request.state.staff, request.state.csrf_token = staff, session.csrf_token
        raise ConsoleRefusal(403, CSRF_REFUSED)
    await access.sign_out(request)
    await access.audit.record(
        actor=staff.email, action="logout", subject=staff.id, from_address=client_address(request)
    )
    access.clear_session_cookie(response)
    return response


@router.post("/console/language")
async def choose_language(
    request: Request,
    lang: FormText = "",
    next: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    await _anonymous_form_csrf(request, csrf_token)
    if lang not in LOCALES:
        raise ConsoleRefusal(400, "unknown language")
    response = RedirectResponse(safe_next(next), 303)
    response.set_cookie(
        LOCALE_COOKIE,
        lang,
        max_age=365 * 24 * 3600,
        path="/",
        secure=access_of(request).settings.session_cookie_secure,
        httponly=True,
        samesite="lax",
    )
    return response


# --- one's own password


async def _signed_in_for_password(request: Request) -> StaffMember:
    """The staff member of the password form (``require`` would send them back to it): signed in, else sign-in."""
    signed_in = await access_of(request).signed_in(request)
    if signed_in is None:
        if request.method == "GET" and not wants_json(request):
            raise ConsoleRefusal(303, "sign-in required", {"Location": f"{LOGIN_PATH}?next={PASSWORD_PATH}"})
        raise ConsoleRefusal(401, "sign-in required")
    staff, session = signed_in
    request.state.staff, request.state.csrf_token = staff, session.csrf_token
    return staff


def _password_page(
    request: Request, staff: StaffMember, next_path: str, errors: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    context = {"must_change": staff.must_change_password, "errors": errors or {}, "next": safe_next(next_path)}
    response = render(request, "password.html", context, status_code=status_code)
    response.headers.update(NO_STORE)
    return response


@router.get(PASSWORD_PATH)
async def password_form(request: Request, next: str = "") -> Response:
    staff = await _signed_in_for_password(request)
    return _password_page(request, staff, next)


@router.post(PASSWORD_PATH)
async def password_change(
    request: Request,
    current: FormText = "",
    new: FormText = "",
    again: FormText = "",
    next: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    staff = await _signed_in_for_password(request)
    if not csrf_matches(request.state.csrf_token, csrf_token or request.headers.get("X-CSRF-Token", "")):
        raise ConsoleRefusal(403, CSRF_REFUSED)
    access = access_of(request)
    changed = await access.change_own_password(staff, current, new, again, client_address(request))
    if changed.token is None:
        return _password_page(request, staff, next, dict(changed.errors or {}), status_code=400)
    response = RedirectResponse(safe_next(next), 303)
    access.set_session_cookie(response, changed.token)
    return response


# --- single sign-on


def _provider(request: Request) -> OpenIdProvider:
    access = access_of(request)
    if not access.settings.oidc_enabled:
        raise ConsoleRefusal(404, "single sign-on is not configured")
    provider: OpenIdProvider | None = getattr(request.app.state, "oidc_provider", None)
    if provider is None:
        provider = request.app.state.oidc_provider = OpenIdProvider(access.settings)
    return provider


@router.get("/console/login/oidc")
async def single_sign_on(request: Request, next: str = "") -> Response:
    provider, access = _provider(request), access_of(request)
    try:
        started = await provider.start(safe_next(next))
    except Exception:
        return _login_page(request, status_code=502, next_path=next, error="access.sso_unavailable")
    response = RedirectResponse(started.url, 303)
    pending = base64.urlsafe_b64encode(started.pending.encode()).decode()  # a plain cookie value: no quoting
    access.set_signed_cookie(response, access.oidc_cookie, access.sign("oidc", pending), STATE_MAX_AGE_SECONDS)
    return response


async def _sso_refused(request: Request, subject: str | None, detail: dict[str, str]) -> Response:
    access = access_of(request)
    await access.audit.record(
        actor=None, action="login_failed", subject=subject, from_address=client_address(request), detail=detail
    )
    return _login_page(request, status_code=401, error="access.sso_refused")


@router.get("/console/login/oidc/callback")
async def single_sign_on_callback(request: Request, state: str = "", code: str = "") -> Response:
    provider, access = _provider(request), access_of(request)
    retry_after = await access.throttle.over_limit(client_address(request))
    if retry_after is not None:
        response = _login_page(request, status_code=429, error="access.login_throttled")
        response.headers["Retry-After"] = str(retry_after)
        return response
    signed = access.unsign("oidc", request.cookies.get(access.oidc_cookie))
    if signed is None:
        # No sign-in of this browser is pending: nothing happened worth a record (and anyone could fill the log).
        return _login_page(request, status_code=401, error="access.sso_refused")
    try:
        if not state or not code:
            raise SingleSignOnRefused("no state or code")
        pending = base64.urlsafe_b64decode(signed.encode()).decode()
        email, next_path = await provider.finish(pending, state[:256], code[:2048])
        account = await access.accounts.by_email(normalise_email(email))
    except (SingleSignOnRefused, AccountProblem, ValueError) as refused:
        return await _sso_refused(request, None, {"reason": "single_sign_on", "why": str(refused)[:200]})
    if account is None:
        return await _sso_refused(request, None, {"reason": "single_sign_on_unknown_account"})
    if not account.active:
        return await _sso_refused(request, account.id, {"reason": "disabled"})
    await access.sign_out(request)
    result = await access.start_session(account, client_address(request), method="single_sign_on")
    assert result.token is not None  # start_session always makes one
    response = RedirectResponse(safe_next(next_path), 303)
    access.set_session_cookie(response, result.token)
    response.delete_cookie(access.oidc_cookie, path="/", secure=access.settings.session_cookie_secure, httponly=True)
    return response


# --- staff accounts


async def _accounts_page(
    request: Request,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    one_time: dict[str, str] | None = None,
) -> Response:
    access = access_of(request)
    accounts = await access.accounts.all()
    context = {
        "accounts": accounts,
        "locked": await access.throttle.locked_among([account.email for account in accounts]),
        "roles": list(Role),
        "errors": errors or {},
        "form": form or {},
        "one_time": one_time,
        "oidc_enabled": access.settings.oidc_enabled,
    }
    response = render(request, "accounts.html", context, status_code=status_code)
    response.headers.update(NO_STORE)
    return response


@router.get("/console/accounts")
async def accounts_list(request: Request, staff: AccountAdmin) -> Response:
    return await _accounts_page(request)


@router.post("/console/accounts")
async def account_create(
    request: Request,
    staff: AccountAdmin,
    email: FormText = "",
    name: FormText = "",
    role: FormText = "",
    sign_in: FormText = "password",
) -> Response:
    access = access_of(request)
    form = {"email": shown_back(email, 254), "name": shown_back(name, 100), "role": role, "sign_in": sign_in}
    errors: dict[str, str] = {}
    try:
        chosen_role = check_role(role)
    except AccountProblem:
        errors["role"] = "access.error_role"
    if sign_in not in ("password", "sso") or (sign_in == "sso" and not access.settings.oidc_enabled):
        errors["sign_in"] = "access.error_sign_in"
    if not errors:
        try:
            account, password = await access.create_account(
                email=email, name=name, role=chosen_role, single_sign_on=sign_in == "sso"
            )
        except EmailTaken:
            errors["email"] = "access.error_email_taken"
        except AccountProblem as problem:
            errors[str(problem)] = f"access.error_{problem}"
    if errors:
        return await _accounts_page(request, status_code=400, errors=errors, form=form)
    await access.audit.record(
        actor=staff.email,
        action="account_created",
        subject=account.id,
        from_address=client_address(request),
        detail={"role": account.role.value, "sign_in": sign_in},
    )
    one_time = {"email": account.email, "password": password} if password else None
    return await _accounts_page(request, status_code=201, one_time=one_time)


ACCOUNT_ACTIONS = ("role", "disable", "enable", "reset_password", "unlock")


def _account_change_problem(account: Account, staff: StaffMember, action: str) -> str | None:
    """The message refusing ``action`` on ``account`` before anything is changed, if any."""
    if action not in ACCOUNT_ACTIONS:
        return "access.error_action"
    if account.id == staff.id and action in ("role", "disable"):
        return "access.error_self"  # an admin cannot lock themselves (or the last admin) out
    if action == "reset_password" and account.password_hash is None:
        return "access.error_sso_only"
    return None


@router.post("/console/accounts/{account_id}")
async def account_change(
    request: Request, account_id: str, staff: AccountAdmin, action: FormText = "", role: FormText = ""
) -> Response:
    access = access_of(request)
    account = await access.accounts.by_id(account_id[:64])
    if account is None:
        raise ConsoleRefusal(404, "no such account")
    problem = _account_change_problem(account, staff, action)
    if problem is not None:
        return await _accounts_page(request, status_code=400, errors={"action": problem})
    detail = {"change": action}
    one_time = None
    if action in ("role", "disable"):
        fields: dict[str, Any] = {"active": False}
        if action == "role":
            try:
                chosen = check_role(role)
            except AccountProblem:
                return await _accounts_page(request, status_code=400, errors={"role": "access.error_role"})
            fields, detail["role"] = {"role": chosen.value}, chosen.value
        if not await access.keep_an_admin(account, **fields):
            return await _accounts_page(request, status_code=409, errors={"action": "access.error_last_admin"})
    elif action == "enable":
        await access.accounts.change(account.id, active=True)
    elif action == "reset_password":
        one_time = {"email": account.email, "password": await access.reset_password(account)}
    else:
        await access.throttle.succeeded(account.email)  # unlock: the failures and any lock are gone
    if action in ("role", "disable", "reset_password"):
        # A changed role, a disabled account or a new password: every session of that staff member ends.
        await access.sessions.end_all(account.id)
    await access.audit.record(
        actor=staff.email,
        action="account_changed",
        subject=account.id,
        from_address=client_address(request),
        detail=detail,
    )
    return await _accounts_page(request, one_time=one_time)


# --- audit log


def _audit_query(request: Request) -> tuple[AuditQuery, dict[str, str], dict[str, str]]:
    """The filters of the query string, what to show back in the form, and the errors of bad ones."""
    params = request.query_params
    names = ("actor", "action", "subject", "since", "until")
    shown = {name: params.get(name, "")[:MAX_FILTER_LENGTH] for name in names}
    errors: dict[str, str] = {}
    days: dict[str, datetime | None] = {"since": None, "until": None}
    for name in days:
        if shown[name]:
            try:
                day = date.fromisoformat(shown[name])
                # "until" includes the whole day (and the day after 9999-12-31 is no date: OverflowError).
                days[name] = datetime.combine(day + timedelta(days=1 if name == "until" else 0), time.min, UTC)
            except (ValueError, OverflowError):
                errors[name] = "access.error_date"
    if shown["action"] and shown["action"] not in ACTIONS:
        errors["action"] = "access.error_audit_action"
    query = AuditQuery(
        actor=shown["actor"].strip().lower() or None,
        action=shown["action"] or None,
        subject=shown["subject"].strip() or None,
        since=days["since"],
        until=days["until"],
    )
    return query, shown, errors


@router.get("/console/audit")
async def audit_list(request: Request, staff: AuditReader, before: str = "") -> Response:
    query, shown, errors = _audit_query(request)
    if errors:
        context: dict[str, Any] = {"entries": [], "next_before": None, "shown": shown, "errors": errors}
        return render(request, "audit.html", {**context, "actions": ACTIONS}, status_code=400)
    page = await access_of(request).audit.find(query, before=before[:64] or None, limit=AUDIT_PAGE_SIZE)
    filters = {name: value for name, value in shown.items() if value}
    context = {
        "entries": page.entries,
        "next_before": page.next_before,
        "shown": shown,
        "errors": {},
        "missing": page.missing,
        "missing_count": page.missing_count,
    }
    return render(request, "audit.html", {**context, "actions": ACTIONS, "filters": filters})


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    # A cell a spreadsheet would run as a formula is quoted into text.
    csv.writer(buffer).writerow(["'" + cell if cell.startswith(FORMULA_STARTS) else cell for cell in cells])
    return buffer.getvalue()


async def _csv(access: StaffAccess, query: AuditQuery) -> AsyncIterator[str]:
    yield "\ufeff" + _csv_line(list(CSV_COLUMNS))
    entry: AuditEntry
    async for entry in access.audit.all(query):
        yield _csv_line(entry.csv_cells())


@router.get("/console/audit.csv")
async def audit_csv(request: Request, staff: AuditReader) -> Response:
    query, shown, errors = _audit_query(request)
    if errors:
        raise ConsoleRefusal(400, "bad filter: " + ", ".join(sorted(errors)))
    access = access_of(request)
    # Which filters were used, not their values: free text typed by whoever exports stays out of the log.
    used = ",".join(name for name, value in shown.items() if value)
    await access.audit.record(
        actor=staff.email,
        action="export",
        subject="audit_log",
        from_address=client_address(request),
        detail={"filters": used} if used else None,
    )
    stamp = access.clock().strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"', **NO_STORE}
    return StreamingResponse(_csv(access, query), media_type="text/csv; charset=utf-8", headers=headers)
