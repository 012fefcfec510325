"""A service started with unsafe settings stops at once, naming what is wrong; the compose file requires the secrets."""

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import uvicorn
import yaml
from fastapi import FastAPI

import agreements.__main__
import agreements.main
import intake.__main__
import intake.main
import notifications.__main__
import notifications.main
from agency_chassis.startup import EX_CONFIG
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_VARIABLES = {
    name.upper()
    for settings_class in (IntakeSettings, AgreementsSettings, NotificationsSettings)
    for name in settings_class.model_fields
}


def production_env(**variables: str) -> dict[str, str]:
    """This process's environment without any service setting, plus ``variables`` (run it where no .env is)."""
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS_VARIABLES}
    # A broker and a database that do not exist: a refusal must come before any connection.
    env |= {"AMQP_URL": "amqp://agency:Br0ker-Pa55@rabbitmq.invalid:5672/", "MONGODB_URL": "mongodb://mongo.invalid"}
    return env | variables


@pytest.mark.parametrize(
    ("command", "environment"),
    [
        ([sys.executable, "-m", "agreements"], {"ENVIRONMENT": "production"}),
        ([str(Path(sys.executable).parent / "wechat-agreements")], {}),  # production is the default
    ],
)
def test_agreements_without_staff_token_refuses_to_start(
    command: list[str], environment: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        command,
        env=production_env(**environment),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EX_CONFIG, result.stderr
    assert "agreements refuses to start with ENVIRONMENT=production:" in result.stderr
    assert "  - STAFF_API_TOKEN: missing" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Br0ker-Pa55" not in result.stderr + result.stdout
    assert "Uvicorn running" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("create_app", "service", "variable"),
    [
        (intake.main.create_app, "intake", "STATUS_BASE_URL"),
        (agreements.main.create_app, "agreements", "STAFF_API_TOKEN"),
        (notifications.main.create_app, "notifications", "STAFF_EMAILS"),
    ],
)
def test_create_app_without_settings_loads_and_checks_them(
    create_app: Callable[[], FastAPI],
    service: str,
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `uvicorn --factory <service>.main:create_app` (and each of intake's worker processes) bypasses __main__.
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    with pytest.raises(SystemExit) as exited:
        create_app()
    assert exited.value.code == EX_CONFIG
    err = capsys.readouterr().err
    assert f"{service} refuses to start with ENVIRONMENT=production:" in err
    assert f"  - {variable}: " in err


@pytest.mark.parametrize(
    ("entry_point", "service", "port"),
    [
        (intake.__main__.main, "intake", "INTAKE_PORT"),
        (agreements.__main__.main, "agreements", "AGREEMENTS_PORT"),
        (notifications.__main__.main, "notifications", "NOTIFICATIONS_PORT"),
    ],
)
async def test_the_entry_point_hands_the_settings_it_checked_to_the_app(
    entry_point: Callable[[], None],
    service: str,
    port: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`python -m <service>` reads its settings once: the app it serves does not read the environment again."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setattr(sys, "argv", [service])
    monkeypatch.setenv("ENVIRONMENT", "local")
    monkeypatch.setenv(port, "18123")
    served: list[tuple[object, dict[str, object]]] = []
    # What is under test is what the entry point gives uvicorn, not uvicorn serving it.
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append((app, options)))
    entry_point()
    [(factory, options)] = served
    assert options["factory"] is True
    assert options["port"] == 18123

    # Were the app to load its settings now, it would find production without a setting and exit.
    monkeypatch.delenv("ENVIRONMENT")
    monkeypatch.delenv(port)
    assert callable(factory)
    with caplog.at_level(logging.INFO, logger="agency_chassis.startup"):
        app = factory()
    assert isinstance(app, FastAPI)
    [started] = [record.getMessage() for record in caplog.records if " starts with " in record.getMessage()]
    assert started.startswith(f"{service} starts with ENVIRONMENT=local and configuration ")
    assert f'"{port}": 18123' in started


# Each service's own secrets in compose (only its own: intake has no staff token, agreements no ALTCHA key).
COMPOSE_SECRETS = {
    "intake": ("EMAIL_VERIFICATION_SECRET", "CAPTCHA_HMAC_KEY"),
    "agreements": ("STAFF_API_TOKEN",),
    "notifications": ("EMAIL_VERIFICATION_SECRET", "PORTAL_LINK_SECRET"),
    "casework": ("AGREEMENTS_API_TOKEN", "AUDIT_HMAC_KEY", "PORTAL_LINK_SECRET"),
}


def test_compose_runs_the_services_with_production_rules_and_no_default_secrets() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, secrets in COMPOSE_SECRETS.items():
        env = compose["services"][name]["environment"]
        assert env["ENVIRONMENT"] == "${ENVIRONMENT:-production}"
        for variable in ("MAIL_FROM", "STAFF_EMAILS", *secrets):
            assert env[variable].startswith(f"${{{variable}:?"), (name, variable)
        # Its own broker and database users, each password required (no default, no guest).
        assert f"${{RABBITMQ_{name.upper()}_PASSWORD:?" in env["AMQP_URL"], name
        assert "guest" not in env["AMQP_URL"]
        assert f"${{MONGO_{name.upper()}_PASSWORD:?" in env["MONGODB_URL"], name
    for server in ("rabbitmq", "mongo"):
        for variable, value in compose["services"][server]["environment"].items():
            assert value.startswith(f"${{{variable}:?"), (server, variable)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="`make test` installs docker-compose")
def test_compose_names_the_missing_secret() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SETTINGS_VARIABLES and not key.startswith(("RABBITMQ_", "MONGO_"))
    }
    result = subprocess.run(
        ["docker-compose", "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert re.search(r"set (RABBITMQ_|MONGO_)[A-Z_]*PASSWORD|set STAFF_API_TOKEN", result.stderr), result.stderr
