"""Who may do what in the console: three roles, their permissions, and the signed-in staff member."""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    # Includes viewing a case's personal data; the page that shows it records the view in the audit log.
    READ_CASES = "read_cases"
    EXPORT_PERSONAL_DATA = "export_personal_data"
    # Status actions, notes, owner assignment.
    WORK_CASES = "work_cases"
    ERASE = "erase"
    # Listing dead letters too.
    REPLAY_DEAD_LETTERS = "replay_dead_letters"
    MANAGE_ACCOUNTS = "manage_accounts"
    # See and export the audit log.
    READ_AUDIT = "read_audit"
    # Configure the CRM's webhook endpoints (their secrets), see and replay deliveries.
    MANAGE_WEBHOOKS = "manage_webhooks"


_VIEWER = frozenset({Permission.READ_CASES})
_OPERATOR = _VIEWER | {Permission.EXPORT_PERSONAL_DATA, Permission.WORK_CASES}
_ADMIN = frozenset(Permission)

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {Role.VIEWER: _VIEWER, Role.OPERATOR: _OPERATOR, Role.ADMIN: _ADMIN}
)


@dataclass(frozen=True)
class StaffMember:
    """The staff member a request comes from, as of this request (role read from the account, not the session)."""

    id: str
    email: str
    name: str
    role: Role
    # A password an admin handed over: until it is changed, the console shows only the form that changes it.
    must_change_password: bool = False

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]
