"""Every action the console audits is one the audit log's viewer can filter by (casework.audit.ACTIONS)."""

import re
from pathlib import Path

import casework
from casework.audit import ACTIONS

SOURCE = Path(casework.__file__).parent
# audit(request, "action", ...) / audit_request(request, "action", ...) / record(..., action="action", subject=...)
AUDITED = re.compile(r"""(?:audit(?:_request)?\(\s*request,\s*"([a-z_]+)"|action="([a-z_]+)",\s*subject=)""")


def test_every_audited_action_can_be_filtered_by() -> None:
    found = (AUDITED.findall(path.read_text(encoding="utf-8")) for path in SOURCE.rglob("*.py"))
    used = {call or record for matches in found for call, record in matches}
    assert {"download_document", "portal_revoke", "status_change", "login"} <= used, "the scan finds the actions"
    assert used - set(ACTIONS) == set()
