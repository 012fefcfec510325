"""A service started with unsafe settings stops at once, naming what is wrong; the compose file requires the secrets."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI

import agreements.main
import intake.main
import notifications.main
from agency_chassis.startup import EX_CONFIG, SettingsRefused
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
    ("build", "variable"),
    [
        (lambda: intake.main.create_app(IntakeSettings(environment="production")), "STATUS_BASE_URL"),
        (lambda: agreements.main.create_app(AgreementsSettings(environment="production")), "STAFF_API_TOKEN"),
        (lambda: notifications.main.create_app(NotificationsSettings(environment="production")), "STAFF_EMAILS"),
    ],
)
def test_create_app_refuses_too(build: Callable[[], FastAPI], variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # `uvicorn --factory <service>.main:create_app` bypasses __main__: the app factory checks as well.
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsRefused) as refused:
        build()
    assert variable in [problem.variable for problem in refused.value.problems]


def test_compose_runs_the_services_with_production_rules_and_no_default_secrets() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("intake", "agreements", "notifications"):
        env = compose["services"][name]["environment"]
        assert env["ENVIRONMENT"] == "${ENVIRONMENT:-production}"
        for variable in ("STAFF_API_TOKEN", "MAIL_FROM", "STAFF_EMAILS"):
            assert env[variable].startswith(f"${{{variable}:?"), variable
        assert "${RABBITMQ_PASSWORD:?" in env["AMQP_URL"]
        assert "guest" not in env["AMQP_URL"]
    assert "${RABBITMQ_PASSWORD:?" in compose["services"]["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="`make test` installs docker-compose")
def test_compose_names_the_missing_secret() -> None:
    env = {key: value for key, value in os.environ.items() if key not in {"RABBITMQ_PASSWORD", *SETTINGS_VARIABLES}}
    result = subprocess.run(
        ["docker-compose", "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "set RABBITMQ_PASSWORD" in result.stderr or "set STAFF_API_TOKEN" in result.stderr, result.stderr
