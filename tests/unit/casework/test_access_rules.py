"""Staff access's plain rules: who may do what, where ``next`` may point, what an email or password may be, and
that every word of the access pages exists in both languages."""

import hashlib
import json
from importlib import resources

import pytest

from casework.access import ROLE_PERMISSIONS, Permission, Role, StaffMember, first_admin_banner, safe_next
from casework.accounts import AccountProblem, normalise_email
from casework.audit import AuditEntry, canonical_json, entry_mac
from casework.passwords import PasswordProblem, check_new_password, hash_password, verify_password

# The issue: "viewer (reads, no personal-data export), operator (works cases), admin (accounts, erasure, replay)";
# the audit log is seen and exported by admins.
EXPECTED = {
    Role.VIEWER: {Permission.READ_CASES},
    Role.OPERATOR: {Permission.READ_CASES, Permission.EXPORT_PERSONAL_DATA, Permission.WORK_CASES},
    Role.ADMIN: set(Permission),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_role_permissions_follow_the_issue(role: Role, permission: Permission) -> None:
    staff = StaffMember(id="1", email="s@agency.example", name="S", role=role)
    assert staff.can(permission) is (permission in EXPECTED[role])
    assert (permission in ROLE_PERMISSIONS[role]) is (permission in EXPECTED[role])


def test_the_role_table_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        ROLE_PERMISSIONS[Role.VIEWER] = frozenset(Permission)  # type: ignore[index]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/console/cases/42?tab=documents", "/console/cases/42?tab=documents"),
        ("https://evil.example/", "/console/cases"),
        ("//evil.example", "/console/cases"),
        ("/\\evil.example", "/console/cases"),
        ("/console\r\nSet-Cookie: x=y", "/console/cases"),
        ("javascript:alert(1)", "/console/cases"),
        ("", "/console/cases"),
        (None, "/console/cases"),
    ],
)
def test_next_stays_on_the_site(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (" Wang.Fang@Agency.Example ", "wang.fang@agency.example"),
        ("用户@例子.中国", "用户@例子.中国"),
        ("e\u0301@agency.example", "\u00e9@agency.example"),  # NFC: one account, however it was typed
    ],
)
def test_emails_are_normalised(given: str, expected: str) -> None:
    assert normalise_email(given) == expected


@pytest.mark.parametrize(
    "given",
    ["", "no-at", "@agency.example", "x@", "a b@agency.example", "x@agency\r\n.example", "x" * 251 + "@a.b", "x@.a"],
)
def test_impossible_emails_are_refused(given: str) -> None:
    with pytest.raises(AccountProblem):
        normalise_email(given)


def test_passwords_are_bounded_and_hashed_with_argon2id() -> None:
    with pytest.raises(PasswordProblem, match="at least 12"):
        check_new_password("short")
    with pytest.raises(PasswordProblem, match="at most 1024"):
        check_new_password("x" * 1025)
    stored = hash_password("密码也可以是中文的，十二个字以上")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "密码也可以是中文的，十二个字以上").matches
    assert not verify_password(stored, "密码也可以是中文的，十二个字以下").matches
    assert not verify_password(None, "anything at all").matches  # a single sign-on account has no password
    assert not verify_password("not a hash", "anything at all").matches


def test_an_entry_mac_covers_every_field_and_the_key_but_not_key_order() -> None:
    from datetime import UTC, datetime

    key = b"k" * 32
    entry = {
        "sequence": 7,
        "at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "actor": "a@agency.example",
        "action": "erase",
        "subject": "case-1",
        "from_address": "192.0.2.1",
        "detail": {"b": "2", "a": "1"},
    }
    assert entry_mac(key, entry) == entry_mac(key, dict(reversed(list(entry.items()))))
    assert b'"at":"2026-01-02T03:04:05.678+00:00"' in canonical_json(entry)  # what MongoDB keeps: milliseconds
    changes: list[tuple[str, object]] = [
        ("actor", "b@agency.example"),
        ("subject", "case-2"),
        ("detail", {"a": "1"}),
        ("sequence", 8),
    ]
    for field, changed in changes:
        assert entry_mac(key, {**entry, field: changed}) != entry_mac(key, entry)
    stored = {**entry, "_id": "x", "hmac": entry_mac(key, entry)}
    assert AuditEntry.from_document(stored, key).intact
    assert not AuditEntry.from_document(stored, b"another key of thirty-two bytes!").intact
    # Recomputing a plain hash after an edit, as anyone could, does not make the entry intact again.
    assert not AuditEntry.from_document(
        {**stored, "hmac": hashlib.sha256(canonical_json(stored)).hexdigest()}, key
    ).intact


def test_the_first_admin_banner_shows_the_email_and_password() -> None:
    banner = first_admin_banner("admin@localhost", "pw-1234567890")
    assert "admin@localhost" in banner
    assert "pw-1234567890" in banner
    assert "only now" in banner


def test_every_access_word_is_in_both_languages() -> None:
    catalogue = json.loads(resources.files("casework").joinpath("translations/access.json").read_text("utf-8"))
    for key, texts in catalogue.items():
        assert set(texts) == {"en", "zh-CN"}, key
        assert all(text.strip() for text in texts.values()), key


def test_the_access_templates_use_only_words_that_exist() -> None:
    import re

    from casework.i18n import catalogue

    known = set(catalogue())
    templates = resources.files("casework").joinpath("templates")
    for name in ("login.html", "accounts.html", "audit.html", "refused.html"):
        text = templates.joinpath(name).read_text("utf-8")
        for key in re.findall(r"""t\(["']([a-z_.0-9]+)["'][,)]""", text):
            assert key in known, (name, key)


@pytest.mark.parametrize(("secure", "prefix"), [(True, "__Host-"), (False, "")])
def test_cookies_take_the_host_prefix_when_secure(secure: bool, prefix: str) -> None:
    from casework.access import StaffAccess
    from casework.settings import CaseworkSettings

    access = StaffAccess(CaseworkSettings(environment="test", session_cookie_secure=secure))
    assert access.session_cookie == f"{prefix}console_session"
    assert access.csrf_cookie == f"{prefix}console_csrf"
