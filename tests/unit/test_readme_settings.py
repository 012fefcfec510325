"""The README's settings table states the code's defaults, and names every setting the services read."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo

from agency_chassis.settings import SharedSettings
from agreements.settings import AgreementsSettings
from casework.settings import CaseworkSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings

README = Path(__file__).resolve().parents[2] / "README.md"
SERVICES: dict[str, type[SharedSettings]] = {
    "intake": IntakeSettings,
    "agreements": AgreementsSettings,
    "notifications": NotificationsSettings,
    "casework": CaseworkSettings,
}
# Variables the table names that no settings class reads, and who reads them instead.
NOT_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR": "prometheus_client and agency_chassis.metrics"}
NO_DEFAULT = "–"


@dataclass(frozen=True)
class Row:
    default: str  # as written, or NO_DEFAULT
    local_only: bool  # "(local only)": production refuses this default
    used_by: str


def settings_rows() -> dict[str, Row]:
    """Each variable's row in the table under ``## Settings``."""
    section = README.read_text(encoding="utf-8").split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, Row] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"not a row of variable | default | used by | meaning: {line}"
        names, defaults = re.findall(r"`([A-Z0-9_]+)`", cells[0]), written_defaults(cells[1])
        if len(defaults) == 1 and defaults[0][0] == NO_DEFAULT:
            defaults *= len(names)
        assert len(defaults) == len(names), f"{cells[0]}: {len(names)} variables, defaults {defaults}"
        rows |= {name: Row(*default, cells[2]) for name, default in zip(names, defaults, strict=True)}
    return rows


def written_defaults(cell: str) -> list[tuple[str, bool]]:
    """``"`localhost` (local only), `1025`"`` -> ``[("localhost", True), ("1025", False)]``;
    ``"– (no cap)"`` -> ``[("–", False)]``."""
    values = re.findall(rf"(?:`([^`]*)`|{NO_DEFAULT})( \(local only\))?", re.sub(r"\((?!local only)[^)]*\)", "", cell))
    return [(value or NO_DEFAULT, bool(local_only)) for value, local_only in values]


def users(variable: str, used_by: str) -> list[str]:
    """The services whose settings class must have ``variable``: ``all``, ``consumers``, by name, or ``each``
    (``INTAKE_PORT`` is intake's)."""
    if used_by.startswith("all"):
        return list(SERVICES)
    if used_by == "each":
        return [name for name in SERVICES if variable.startswith(f"{name.upper()}_")]
    if used_by == "consumers":
        return ["agreements", "notifications", "casework"]
    return [name for name in SERVICES if re.search(rf"\b{name}\b", used_by)]


def code_default(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True, validated_data={})


def as_the_code_reads(written: str, field: FieldInfo) -> Any:
    """The README's default parsed by the field's own type and constraints (``1`` == ``1.0``, URL normalised)."""
    annotation: Any = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return TypeAdapter(annotation).validate_python(written)


ROWS = settings_rows()
FIELDS = {name.upper() for settings_class in SERVICES.values() for name in settings_class.model_fields}


def test_the_table_has_a_row_for_every_setting_and_only_those() -> None:
    assert len(ROWS) > 30  # the table was found and read
    assert set(ROWS) - set(NOT_SETTINGS) == FIELDS


@pytest.mark.parametrize("variable", sorted(set(ROWS) - set(NOT_SETTINGS)))
def test_each_default_in_the_table_is_the_code_s(variable: str) -> None:
    written, used_by = ROWS[variable].default, ROWS[variable].used_by
    services = users(variable, used_by)
    assert services, f"{variable}: no service in 'used by' ({used_by})"
    for service in services:
        field = SERVICES[service].model_fields.get(variable.lower())
        assert field is not None, f"the README says {service} uses {variable}; {service}'s settings have no such field"
        default = code_default(field)
        if written == NO_DEFAULT:
            assert default in (None, [], {}), f"{service}: {variable} defaults to {default!r}, the README says none"
        else:
            assert as_the_code_reads(written, field) == default, f"{service}: {variable} defaults to {default!r}"


def test_a_setting_several_services_read_has_one_default() -> None:
    for variable in FIELDS:
        defaults = {
            service: code_default(settings_class.model_fields[variable.lower()])
            for service, settings_class in SERVICES.items()
            if variable.lower() in settings_class.model_fields
        }
        assert len({repr(default) for default in defaults.values()}) == 1, f"{variable}: {defaults}"


def test_the_defaults_marked_local_only_are_those_production_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in FIELDS:
        monkeypatch.delenv(variable, raising=False)
    refused = {
        problem.variable
        for settings_class in SERVICES.values()
        for problem in settings_class(_env_file=None).production_problems()
    }
    with_a_default = {variable for variable in refused if ROWS[variable].default != NO_DEFAULT}
    assert with_a_default == {variable for variable, row in ROWS.items() if row.local_only}
