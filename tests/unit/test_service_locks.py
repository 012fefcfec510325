"""Each image installs only its service's dependencies: services/<name>/requirements.lock (scripts/service_locks.py)."""

import importlib.util
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "agreements", "notifications", "casework")


def service_locks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("service_locks", ROOT / "scripts" / "service_locks.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("service_locks", module)
    spec.loader.exec_module(module)
    return module


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(text: str) -> set[str]:
    return {normalize(m) for m in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==", text, re.MULTILINE)}


def project_requirements(pyproject: Path, extras: set[str]) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project.get("optional-dependencies", {}).get(extra, [])]
    return found


def applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether the requirement applies here (Python 3.11 on Linux) with these extras of its dependent."""
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": extra}) for extra in {"", *extras})


def needed(service: str) -> set[str]:
    """Every third-party distribution the service needs: its pyproject's, agency-shared's, and theirs
    (from the installed distributions' metadata, an independent source from the lock's `# via`)."""
    local = {"agency-shared": ROOT / "shared" / "pyproject.toml"}
    pending = [(r, set[str]()) for r in project_requirements(ROOT / "services" / service / "pyproject.toml", set())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, dependent_extras = pending.pop()
        name, extras = normalize(requirement.name), set(requirement.extras)
        if not applies(requirement, dependent_extras) or (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        if name in local:
            pending += [(r, extras) for r in project_requirements(local[name], extras)]
            continue
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            pytest.fail(f"{name} (needed by {service}) is not installed: run `make test` once")
        pending += [(Requirement(text), extras) for text in requires]
    return {name for name, _ in seen} - set(local)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_lock_is_its_part_of_requirements_lock_verbatim(service: str) -> None:
    module = service_locks()
    committed = (ROOT / "services" / service / "requirements.lock").read_text()
    assert committed == module.service_lock(service), "out of date: run python scripts/service_locks.py"
    lock = module.entries((ROOT / "requirements.lock").read_text())
    for entry in module.entries(committed).values():
        assert entry.text == lock[entry.name].text, entry.name  # same pin, same hashes
        assert "--hash=sha256:" in entry.text, entry.name


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_lock_has_everything_the_service_needs(service: str) -> None:
    locked = pinned((ROOT / "services" / service / "requirements.lock").read_text())
    missing = needed(service) - locked
    assert not missing, f"{service} needs {sorted(missing)}, missing from its lock"


def test_each_image_gets_only_its_own_services_dependencies() -> None:
    locks = {s: pinned((ROOT / "services" / s / "requirements.lock").read_text()) for s in SERVICES}
    assert "altcha" in locks["intake"]
    assert "limits" in locks["intake"]
    assert "aiosmtplib" in locks["notifications"]
    assert "aiolimiter" in locks["notifications"]
    assert not {"altcha", "limits", "aiosmtplib", "aiolimiter", "jinja2"} & locks["agreements"]
    assert not {"aiosmtplib", "aiolimiter"} & locks["intake"]
    assert not {"altcha", "limits"} & locks["notifications"]
    assert all(locks[s] < pinned((ROOT / "requirements.lock").read_text()) for s in SERVICES)


def test_the_subset_follows_the_locks_via_annotations() -> None:
    """A made-up lock: a package reached only through another service's dependency stays out."""
    module = service_locks()
    lock = (
        "a==1 \\\n    --hash=sha256:aa\n    # via wechat-agency-intake\n"
        "b==1 \\\n    --hash=sha256:bb\n    # via a\n"
        "c==1 \\\n    --hash=sha256:cc\n    # via\n    #   agency-shared\n    #   wechat-agency-notifications\n"
        "d==1 \\\n    --hash=sha256:dd\n    # via wechat-agency-notifications\n"
    )
    assert pinned(module.service_lock("intake", lock)) == {"a", "b", "c"}
    assert pinned(module.service_lock("notifications", lock)) == {"c", "d"}
    assert pinned(module.service_lock("agreements", lock)) == {"c"}
