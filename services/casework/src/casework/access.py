"""Staff access to the console: accounts, sign-in, sessions, CSRF protection and permissions, in one object
(``StaffAccess``, at ``app.state.access``) and one FastAPI dependency (``require``).

CSRF: a signed-in request carries its session's token (kept server-side with the session). A page before
sign-in (the sign-in form, the language switch) gets a pre-session token instead: a signed double-submit cookie,
``<nonce>.<HMAC>``, whose value the form repeats. It is set by the routes that show those forms, not by a
middleware, so the console needs nothing from the composition root but ``install`` (access_routes).
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import HTTPException, Request
from fastapi.responses import Response
from pymongo import AsyncMongoClient, ReturnDocument

from agency_shared.events import utc_now
from casework.accounts import Account, AccountProblem, StaffAccounts, check_name, normalise_email
from casework.audit import AuditLog
from casework.passwords import (
    MAX_PASSWORD_LENGTH,
    PasswordCheck,
    PasswordProblem,
    PasswordWork,
    check_new_password,
    generate_password,
)
from casework.roles import ROLE_PERMISSIONS, Permission, Role, StaffMember
from casework.sessions import LoginThrottle, Session, Sessions
from casework.settings import CaseworkSettings

__all__ = [
    "ROLE_PERMISSIONS",
    "ConsoleRefusal",
    "Permission",
    "Role",
    "SignIn",
    "StaffAccess",
    "StaffMember",
    "audit_request",
    "client_address",
    "first_admin_banner",
    "require",
    "safe_next",
]

Clock = Callable[[], datetime]
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_REFUSED = "CSRF token missing or wrong"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_PATH = "/console/login"
PASSWORD_PATH = "/console/password"  # noqa: S105 - a page, not a secret
PASSWORD_CHANGE_REQUIRED = "password change required: change your password at /console/password first"  # noqa: S105


def safe_next(value: str | None, default: str = "/console/cases") -> str:
    """``value`` when it is a path on this site (``/console/...``), else ``default``: never another origin
    (``//evil``, ``/\\evil``, ``https://evil``), never a header break."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ch in value for ch in "\\\r\n\t") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


class ConsoleRefusal(HTTPException):
    """A refused request (401, 403, 429). ``install`` (access_routes) registers a handler that renders it as the
    console's page, or JSON for a client asking for JSON; without it FastAPI answers JSON with the same status."""

    def __init__(self, status_code: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code, reason, dict(headers) if headers else None)
        self.reason = reason


@dataclass(frozen=True)
class SignIn:
    """What a password sign-in came to: ``token`` set on success; else ``problem`` names the message to show."""

    token: str | None = None
    staff: StaffMember | None = None
    # "email" or "password" (input that cannot be right: say so), "refused" (wrong, unknown or locked: one
    # message for all), "throttled" (too many attempts from the address: retry_after seconds).
    problem: str | None = None
    retry_after: int = 0


@dataclass(frozen=True)
class PasswordChange:
    """What a staff member's own password change came to: ``token`` (their new session) on success, else
    ``errors``, the message of each field to correct."""

    token: str | None = None
    errors: Mapping[str, str] | None = None


def _staff(account: Account) -> StaffMember:
    return StaffMember(
        id=account.id,
        email=account.email,
        name=account.name,
        role=account.role,
        must_change_password=account.must_change_password,
    )


def first_admin_banner(email: str, password: str) -> str:
    """What a local run prints once when it made the first admin with a generated password."""
    rule = "=" * 72
    return (
        f"{rule}\nNo staff account existed, so an admin was created for this local run:\n"
        f"  email:    {email}\n  password: {password}\n"
        f"Sign in at /console/login. This password is shown only now.\n{rule}"
    )


class StaffAccess:
    def __init__(self, settings: CaseworkSettings, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.accounts = StaffAccounts(clock)
        self.sessions = Sessions(
            clock, timedelta(minutes=settings.session_idle_minutes), timedelta(hours=settings.session_max_hours)
        )
        self.throttle = LoginThrottle(
            clock,
            settings.login_attempts_per_minute,
            settings.login_max_failures,
            timedelta(minutes=settings.login_lockout_minutes),
        )
        self.audit = AuditLog(settings.audit_key(), clock)
        self.passwords = PasswordWork()
        self._signing_key: bytes | None = None
        prefix = "__Host-" if settings.session_cookie_secure else ""
        self.session_cookie = f"{prefix}console_session"
        self.csrf_cookie = f"{prefix}console_csrf"
        self.oidc_cookie = f"{prefix}console_oidc"

    async def open(self, client: AsyncMongoClient[dict[str, Any]], db_name: str) -> None:
        await self.accounts.open(client, db_name)
        await self.sessions.open(client, db_name)
        await self.throttle.open(client, db_name)
        await self.audit.open(client, db_name)
        # One key for every replica (a cookie signed by one is good at all): made once, kept in the database.
        keys = client[db_name]["casework_keys"]
        document = await keys.find_one_and_update(
            {"_id": "console_signing"},
            {"$setOnInsert": {"key": secrets.token_hex(32)}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert document is not None  # an upsert returning the document after it
        self._signing_key = bytes.fromhex(document["key"])

    async def close(self) -> None:
        self._signing_key = None

    # --- accounts

    async def create_account(
        self, *, email: str, name: str, role: Role, password: str | None = None, single_sign_on: bool = False
    ) -> tuple[Account, str | None]:
        """A new account; with neither a password nor ``single_sign_on`` one is generated and returned (show it
        once). Raises AccountProblem / PasswordProblem for input it cannot take."""
        email, name = normalise_email(email), check_name(name)
        generated = None if password is not None or single_sign_on else generate_password()
        chosen = password if password is not None else generated
        password_hash = await self.passwords.hash(chosen) if chosen is not None else None
        account = await self.accounts.create(
            email=email, name=name, role=role, password_hash=password_hash, must_change_password=generated is not None
        )
        return account, generated

    async def reset_password(self, account: Account) -> str:
        """A new one-time password for ``account`` (to be changed at its next sign-in), which also unlocks it;
        raises PasswordProblem for an account that signs in with single sign-on only."""
        if account.password_hash is None:
            raise PasswordProblem("single sign-on only")
        password = generate_password()
        await self.accounts.change(
            account.id, password_hash=await self.passwords.hash(password), must_change_password=True
        )
        await self.throttle.succeeded(account.email)
        return password

    async def keep_an_admin(self, account: Account, **fields: Any) -> bool:
        """Applies ``fields`` (a role or ``active``) to ``account``; when that leaves no active admin (another
        admin was removed at the same moment), undoes it and returns False."""
        await self.accounts.change(account.id, **fields)
        if account.role is not Role.ADMIN or not account.active or await self.accounts.active_admins() > 0:
            return True
        await self.accounts.change(account.id, only_if=fields, role=account.role.value, active=account.active)
        return False

    async def change_own_password(
        self, staff: StaffMember, current: str, new: str, again: str, address: str | None
    ) -> PasswordChange:
        """Checks the current password (counted like a sign-in attempt) and sets ``new``; every session of the
        staff member ends and a new one starts (the token returned)."""
        account = await self.accounts.by_id(staff.id)
        if account is None or account.password_hash is None:
            return PasswordChange(errors={"current": "access.error_sso_only"})
        errors: dict[str, str] = {}
        try:
            check_new_password(new)
        except PasswordProblem:
            errors["new"] = "access.error_new_password"
        if new != again:
            errors["again"] = "access.error_passwords_differ"
        elif new == current and not errors:
            errors["new"] = "access.error_same_password"
        if errors:
            return PasswordChange(errors=errors)
        attempt = await self.throttle.attempt(account.email)
        usable = attempt.allowed and 0 < len(current) <= MAX_PASSWORD_LENGTH
        check = await self.passwords.verify(account.password_hash, current) if usable else PasswordCheck(False)
        if not check.matches:
            if attempt.allowed:
                await self.throttle.failed(account.email, attempt)
            return PasswordChange(errors={"current": "access.error_current_password"})
        await self.throttle.succeeded(account.email)
        password_hash = await self.passwords.hash(new)
        await self.accounts.change(account.id, password_hash=password_hash, must_change_password=False)
        await self.sessions.end_all(account.id)  # a session someone else may have opened with the old password
        token, _ = await self.sessions.start(account.id, address)
        await self.audit.record(
            actor=account.email, action="password_changed", subject=account.id, from_address=address
        )
        return PasswordChange(token=token)

    async def ensure_first_admin(self, email: str, password: str | None) -> str | None:
        """A local run's first admin when no account exists; the generated password if none was given."""
        if await self.accounts.any_exists():
            return None
        account, generated = await self.create_account(email=email, name="Admin", role=Role.ADMIN, password=password)
        await self.audit.record(
            actor=None, action="account_created", subject=account.id, from_address=None, detail={"role": "admin"}
        )
        return generated

    # --- sign-in

    async def sign_in(self, email: str, password: str, address: str | None) -> SignIn:
        retry_after = await self.throttle.over_limit(address)
        if retry_after is not None:
            return SignIn(problem="throttled", retry_after=retry_after)
        try:
            email = normalise_email(email)
        except AccountProblem:
            return SignIn(problem="email")
        if not password or len(password) > MAX_PASSWORD_LENGTH:
            return SignIn(problem="password")
        account = await self.accounts.by_email(email)
        subject = account.id if account else None
        attempt = await self.throttle.attempt(email)
        if not attempt.allowed:
            await self.audit.record(
                actor=None, action="login_failed", subject=subject, from_address=address, detail={"reason": "locked"}
            )
            return SignIn(problem="refused")
        usable = account if account is not None and account.active else None
        check = await self.passwords.verify(usable.password_hash if usable else None, password)
        if usable is None or not check.matches:
            locked_now = await self.throttle.failed(email, attempt)
            reason = "unknown_account" if account is None else "disabled" if not account.active else "wrong_password"
            detail = {"reason": reason, **({"locked": "true"} if locked_now else {})}
            await self.audit.record(
                actor=None, action="login_failed", subject=subject, from_address=address, detail=detail
            )
            return SignIn(problem="refused")
        await self.throttle.succeeded(email)
        if check.rehashed:
            await self.accounts.change(usable.id, password_hash=check.rehashed)
        return await self.start_session(usable, address, method="password")

    async def start_session(self, account: Account, address: str | None, method: str) -> SignIn:
        token, _ = await self.sessions.start(account.id, address)
        await self.audit.record(
            actor=account.email, action="login", subject=account.id, from_address=address, detail={"method": method}
        )
        return SignIn(token=token, staff=_staff(account))

    async def signed_in(self, request: Request) -> tuple[StaffMember, Session] | None:
        """The staff member and live session of the request's cookie (idle expiry refreshed), or None."""
        token = request.cookies.get(self.session_cookie)
        if not token or len(token) > 128:
            return None
        session = await self.sessions.resume(token)
        if session is None:
            return None
        account = await self.accounts.by_id(session.staff_id)
        if account is None or not account.active:
            await self.sessions.end(token)
            return None
        return _staff(account), session

    async def sign_out(self, request: Request) -> None:
        token = request.cookies.get(self.session_cookie)
        if token:
            await self.sessions.end(token)

    # --- cookies

    def _cookie(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.settings.session_cookie_secure,
            httponly=True,
            samesite="lax",
        )

    def set_signed_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        self._cookie(response, name, value, max_age=max_age)

    def set_session_cookie(self, response: Response, token: str) -> None:
        # No max-age: a browser session cookie; the server ends the session on idle or absolute expiry anyway.
        self._cookie(response, self.session_cookie, token)

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.session_cookie, path="/", secure=self.settings.session_cookie_secure, httponly=True, samesite="lax"
        )

    # --- signed values (pre-session CSRF tokens, the single sign-on state)

    def sign(self, purpose: str, value: str) -> str:
        if self._signing_key is None:
            raise RuntimeError("StaffAccess.open() was not awaited")
        mac = hmac.new(self._signing_key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()
        return f"{value}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def unsign(self, purpose: str, signed: str | None) -> str | None:
        if not signed or len(signed) > 4096 or "." not in signed or self._signing_key is None:
            return None
        value = signed.rsplit(".", 1)[0]
        return value if hmac.compare_digest(self.sign(purpose, value).encode(), signed.encode()) else None

    def presession_token(self, request: Request) -> tuple[str, bool]:
        """The request's pre-session CSRF token, and whether it is new (then ``set_presession_cookie``)."""
        current = request.cookies.get(self.csrf_cookie)
        if current and self.unsign("csrf", current) is not None:
            return current, False
        return self.sign("csrf", secrets.token_urlsafe(24)), True

    def set_presession_cookie(self, response: Response, token: str) -> None:
        self._cookie(response, self.csrf_cookie, token, max_age=12 * 3600)

    def presession_matches(self, request: Request, presented: str) -> bool:
        cookie = request.cookies.get(self.csrf_cookie) or ""
        return (
            bool(presented)
            and self.unsign("csrf", cookie) is not None
            and hmac.compare_digest(cookie.encode(), presented.encode())
        )


def access_of(request: Request) -> StaffAccess:
    access: StaffAccess = request.app.state.access
    return access


async def audit_request(
    request: Request, action: str, subject: str | None, detail: Mapping[str, str] | None = None
) -> None:
    """Record ``action`` on ``subject`` (a case id, never the personal data) by the request's signed-in staff member
    (set by ``require``), from the request's address: e.g. ``await audit_request(request, "view_personal_data",
    case_id)`` in the page that shows a case's documents."""
    staff: StaffMember | None = getattr(request.state, "staff", None)
    await access_of(request).audit.record(
        actor=staff.email if staff else None,
        action=action,
        subject=subject,
        from_address=client_address(request),
        detail=detail,
    )


async def presented_csrf_token(request: Request) -> str:
    """The token a request carries: the ``X-CSRF-Token`` header, else the form field ``csrf_token``."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def csrf_matches(expected: str, presented: str) -> bool:
    return bool(presented) and hmac.compare_digest(expected.encode(), presented.encode())


def _not_signed_in(request: Request) -> ConsoleRefusal:
    if request.method in ("GET", "HEAD") and not wants_json(request):
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = f"{LOGIN_PATH}?next={quote(safe_next(path), safe='')}"
        return ConsoleRefusal(303, "sign-in required", {"Location": location})
    return ConsoleRefusal(401, "sign-in required")


def _password_change_first(request: Request) -> ConsoleRefusal:
    if request.method in ("GET", "HEAD") and not wants_json(request):
        return ConsoleRefusal(303, PASSWORD_CHANGE_REQUIRED, {"Location": PASSWORD_PATH})
    return ConsoleRefusal(403, PASSWORD_CHANGE_REQUIRED)


def require(permission: Permission) -> Callable[[Request], Any]:
    """A dependency giving the signed-in staff member who has ``permission``: redirect to sign-in (HTML GET) or 401
    without a live session, 403 without the permission or, on a state-changing request, without the CSRF token;
    while the staff member must change their password, a redirect to that form (HTML GET) or 403."""

    async def dependency(request: Request) -> StaffMember:
        access = access_of(request)
        signed_in = await access.signed_in(request)
        if signed_in is None:
            raise _not_signed_in(request)
        staff, session = signed_in
        request.state.staff = staff
        request.state.csrf_token = session.csrf_token
        if request.method in UNSAFE_METHODS and not csrf_matches(
            session.csrf_token, await presented_csrf_token(request)
        ):
            raise ConsoleRefusal(403, CSRF_REFUSED)
        if staff.must_change_password:
            raise _password_change_first(request)
        if not staff.can(permission):
            raise ConsoleRefusal(403, "permission")
        return staff

    dependency.__name__ = f"require_{permission.value}"
    return dependency
