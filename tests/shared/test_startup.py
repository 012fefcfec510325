"""Start-up safety: which settings each service refuses in production, and the masked configuration it logs."""

import json
import logging
from typing import Any

import pytest
from pydantic import AmqpDsn, MongoDsn, SecretStr

from agency_chassis.masking import MASK, mask_url
from agency_chassis.settings import MongoSettings, SharedSettings, SmtpSettings
from agency_chassis.startup import (
    EX_CONFIG,
    SettingsRefused,
    check_settings,
    effective_configuration,
    load_settings,
    log_configuration,
    settings_problems,
)
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings

TOKEN = "k3Jx9vQ2mT7pL4wZ8rN1bY6cH5dF0gSa"
BROKER = "amqp://agency:Br0ker-Pa55@rabbitmq.internal:5672/"
DATABASE = (
    "mongodb://ledger:Db-Pa55@mongo-1.internal,mongo-2.internal/?replicaSet=rs0&tlsCertificateKeyFilePassword=pem"
)
REAL_MAIL: dict[str, Any] = {
    "smtp_host": "smtp.agency.com",
    "mail_from": "WeChat Agency <no-reply@agency.com>",
    "staff_emails": ["ops@agency.com"],
    "intake_base_url": "https://apply.agency.com",
    "email_verification_secret": "Vf-5ecret-0f-m0re-than-32-characters",
    "portal_link_secret": "P0rtal-l1nk-5ecret-0f-m0re-than-32-chars",
    "portal_url": "https://portal.agency.com",
    "ledger_anchor_emails": ["ledger-archive@agency.com"],
}
SETTINGS_VARIABLES = {
    name.upper()
    for settings_class in (IntakeSettings, AgreementsSettings, NotificationsSettings)
    for name in settings_class.model_fields
}


@pytest.fixture(autouse=True)
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Only what each test passes counts: no variable of the process, no .env file."""
    for variable in SETTINGS_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)


def variables(settings: Any) -> list[str]:
    return [problem.variable for problem in settings_problems(settings)]


def test_production_is_the_default() -> None:
    assert AgreementsSettings().environment == "production"


def test_production_refuses_every_development_default_and_missing_secret() -> None:
    assert variables(IntakeSettings()) == [
        "AMQP_URL",
        "MONGODB_URL",
        "EMAIL_VERIFICATION_SECRET",
        "STATUS_BASE_URL",
        "CAPTCHA_HMAC_KEY",
    ]
    assert variables(AgreementsSettings()) == ["AMQP_URL", "MONGODB_URL", "STAFF_API_TOKEN", "LEDGER_SIGNING_KEY"]
    assert variables(NotificationsSettings()) == [
        "AMQP_URL",
        "PORTAL_LINK_SECRET",
        "PORTAL_URL",
        "EMAIL_VERIFICATION_SECRET",
        "MONGODB_URL",
        "SMTP_HOST",
        "MAIL_FROM",
        "STAFF_EMAILS",
        "INTAKE_BASE_URL",
        "LEDGER_ANCHOR_EMAILS",
    ]


@pytest.mark.parametrize(
    ("settings_class", "refused"),
    [
        (SharedSettings, ["AMQP_URL"]),
        (MongoSettings, ["AMQP_URL", "MONGODB_URL"]),
        (SmtpSettings, ["AMQP_URL", "SMTP_HOST", "MAIL_FROM", "STAFF_EMAILS"]),
    ],
)
def test_each_chassis_settings_class_brings_the_rules_of_its_own_fields(
    settings_class: type[SharedSettings], refused: list[str]
) -> None:
    # A service's class adds its own rules to these (see the test above); none is named here.
    assert [problem.variable for problem in settings_class().production_problems()] == refused


def test_the_rules_say_what_production_would_refuse_in_any_environment() -> None:
    settings = IntakeSettings(environment="local")
    refused = ["AMQP_URL", "MONGODB_URL", "EMAIL_VERIFICATION_SECRET", "STATUS_BASE_URL", "CAPTCHA_HMAC_KEY"]
    assert [problem.variable for problem in settings.production_problems()] == refused
    assert settings_problems(settings) == []


def test_production_refuses_the_captcha_off_and_says_why() -> None:
    """CAPTCHA=off would silently drop the human check: nothing held, every bot's submission sent to the staff."""
    key = SecretStr("k" * 32)
    [off] = [
        p for p in settings_problems(IntakeSettings(captcha="off", captcha_hmac_key=key)) if p.variable == "CAPTCHA"
    ]
    assert "human check off" in off.reason
    assert "CAPTCHA=altcha" in off.reason
    assert "CAPTCHA" not in variables(IntakeSettings(captcha="altcha", captcha_hmac_key=key))
    assert "CAPTCHA" not in variables(IntakeSettings(captcha="off", environment="local"))
    assert "CAPTCHA" not in variables(IntakeSettings(captcha="off", environment="test"))


def test_production_needs_a_long_captcha_key_with_the_captcha_on() -> None:
    # With the CAPTCHA off the key is not used: production refuses CAPTCHA itself instead.
    assert variables(IntakeSettings(captcha="off")).count("CAPTCHA_HMAC_KEY") == 0
    assert "CAPTCHA" in variables(IntakeSettings(captcha="off"))
    [short] = [
        p
        for p in settings_problems(IntakeSettings(captcha_hmac_key=SecretStr("k" * 31)))
        if p.variable == "CAPTCHA_HMAC_KEY"
    ]
    assert "too short (31 characters)" in short.reason
    assert "k" * 31 not in str(short)  # the key itself is never quoted
    assert "CAPTCHA_HMAC_KEY" not in variables(IntakeSettings(captcha_hmac_key=SecretStr("k" * 32)))


@pytest.mark.parametrize("environment", ["local", "test"])
def test_local_development_and_tests_accept_the_defaults(environment: str) -> None:
    for settings_class in (IntakeSettings, AgreementsSettings, NotificationsSettings):
        assert settings_problems(settings_class(environment=environment)) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "variable", "reason"),
    [
        ({"amqp_url": "amqp://guest:guest@rabbitmq.internal:5672/"}, "AMQP_URL", "guest account"),
        ({"amqp_url": "amqp://rabbitmq.internal:5672/"}, "AMQP_URL", "guest account"),
        ({"mail_from": "WeChat Agency <no-reply@localhost>"}, "MAIL_FROM", "placeholder"),
        ({"mail_from": "no-reply@agency.example"}, "MAIL_FROM", "placeholder"),
        ({"mail_from": "WeChat Agency"}, "MAIL_FROM", "not an address"),
        ({"staff_emails": ["ops@agency.com", "staff@localhost"]}, "STAFF_EMAILS", "staff@localhost"),
        ({"staff_emails": ["sales@example.com"]}, "STAFF_EMAILS", "sales@example.com"),
        ({"staff_emails": []}, "STAFF_EMAILS", "missing"),
        ({"smtp_username": "mailer"}, "SMTP_PASSWORD", "SMTP_USERNAME is set"),
    ],
)
def test_production_refuses_placeholders(change: dict[str, Any], variable: str, reason: str) -> None:
    complete: dict[str, Any] = {"environment": "production", "amqp_url": BROKER, "mongodb_url": DATABASE, **REAL_MAIL}
    settings = NotificationsSettings(**{**complete, **change})
    [problem] = settings_problems(settings)
    assert problem.variable == variable
    assert reason in problem.reason


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("change-me-local-only", "placeholder"),
        ("CHANGEME" * 5, "placeholder"),
        ("short-but-random-9f8e", "too short (21 characters)"),
    ],
)
def test_agreements_refuses_a_missing_or_weak_staff_token(token: str | None, reason: str) -> None:
    settings = AgreementsSettings(
        environment="production",
        amqp_url=AmqpDsn(BROKER),
        mongodb_url=MongoDsn(DATABASE),
        staff_api_token=SecretStr(token) if token is not None else None,
    )
    # (LEDGER_SIGNING_KEY, unset here, is refused too: tests/unit/test_checkpoints.py)
    [problem] = [problem for problem in settings_problems(settings) if problem.variable != "LEDGER_SIGNING_KEY"]
    assert problem.variable == "STAFF_API_TOKEN"
    assert reason in problem.reason
    assert not token or token not in problem.reason  # never echoed


def test_complete_production_settings_start_and_are_logged_masked(caplog: pytest.LogCaptureFixture) -> None:
    settings = NotificationsSettings(
        environment="production",
        amqp_url=AmqpDsn(BROKER),
        mongodb_url=MongoDsn(DATABASE),
        smtp_username="mailer",
        smtp_password=SecretStr("Smtp-Pa55"),
        **REAL_MAIL,
    )
    check_settings(settings, "notifications")
    with caplog.at_level(logging.INFO, logger="agency_chassis.startup"):
        log_configuration(settings, "notifications")

    [record] = caplog.records
    line = record.getMessage()
    assert "\n" not in line
    for secret in ("Br0ker-Pa55", "Db-Pa55", "Smtp-Pa55", "pem", REAL_MAIL["email_verification_secret"],
                   REAL_MAIL["portal_link_secret"]):  # fmt: skip
        assert secret not in line
    shown = json.loads(line.split(" configuration ", 1)[1])
    assert shown["AMQP_URL"] == "amqp://agency:***@rabbitmq.internal:5672/"
    assert shown["MONGODB_URL"].startswith("mongodb://ledger:***@mongo-1.internal")
    assert shown["SMTP_PASSWORD"] == MASK
    assert shown["EMAIL_VERIFICATION_SECRET"] == MASK
    assert shown["PORTAL_LINK_SECRET"] == MASK
    assert shown["SMTP_USERNAME"] == "mailer"
    assert shown["STAFF_EMAILS"] == ["ops@agency.com"]
    assert shown["ENVIRONMENT"] == "production"
    assert set(shown) == {name.upper() for name in NotificationsSettings.model_fields}


def test_tokens_are_masked_and_unset_secrets_shown_as_unset() -> None:
    shown = effective_configuration(AgreementsSettings(environment="local", staff_api_token=SecretStr(TOKEN)))
    assert shown["STAFF_API_TOKEN"] == MASK
    assert TOKEN not in json.dumps(shown)
    assert effective_configuration(AgreementsSettings(environment="local"))["STAFF_API_TOKEN"] is None


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://agency:s3cret@rabbitmq:5672/", "amqp://agency:***@rabbitmq:5672/"),
        ("amqp://agency:p%40ss@rabbitmq/vhost", "amqp://agency:***@rabbitmq/vhost"),
        (
            "mongodb://u:p@a:1,b:2/db?authSource=admin&password=x",
            "mongodb://u:***@a:1,b:2/db?authSource=admin&password=***",
        ),
        ("mongodb://a:27017", "mongodb://a:27017"),
        ("http://localhost:8001", "http://localhost:8001"),
    ],
)
def test_url_passwords_are_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_check_settings_raises_naming_each_variable() -> None:
    with pytest.raises(SettingsRefused) as refused:
        check_settings(AgreementsSettings(), "agreements")
    message = str(refused.value)
    assert message.startswith("agreements refuses to start with ENVIRONMENT=production:")
    for variable in ("AMQP_URL", "MONGODB_URL", "STAFF_API_TOKEN"):
        assert f"  - {variable}: " in message
    assert "ENVIRONMENT=local" in message  # says how to run on a development machine


def test_load_settings_exits_with_ex_config_and_the_problems(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMQP_URL", BROKER)
    monkeypatch.setenv("MONGODB_URL", DATABASE)
    with pytest.raises(SystemExit) as exited:
        load_settings(AgreementsSettings, "agreements")
    assert exited.value.code == EX_CONFIG
    err = capsys.readouterr().err
    assert "STAFF_API_TOKEN: missing" in err
    assert "Br0ker-Pa55" not in err


def test_load_settings_reports_invalid_values_by_variable_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "prod")
    monkeypatch.setenv("AMQP_URL", "http://agency:Br0ker-Pa55@rabbitmq/")
    with pytest.raises(SystemExit) as exited:
        load_settings(IntakeSettings, "intake")
    assert exited.value.code == EX_CONFIG
    err = capsys.readouterr().err
    assert "  - ENVIRONMENT: " in err
    assert "  - AMQP_URL: " in err
    assert "Br0ker-Pa55" not in err


def test_tools_that_do_not_serve_skip_the_production_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", BROKER)
    assert load_settings(AgreementsSettings, "agreements", check=False).environment == "production"
