"""Production refuses a link-signing secret that is unset, the development one, or short, and says why."""

import pytest

from agency_chassis.settings import (
    DEVELOPMENT_PORTAL_SECRET,
    DEVELOPMENT_VERIFICATION_SECRET,
    MIN_SECRET_LENGTH,
    PortalEmailSettings,
    PortalLinkSettings,
    SharedSettings,
    VerificationSettings,
)

pytestmark = pytest.mark.unit

BROKER = {"amqp_url": "amqp://svc:pw@rabbit:5672/"}
CASES = [
    (VerificationSettings, "email_verification_secret", DEVELOPMENT_VERIFICATION_SECRET, "intake and notifications"),
    (PortalLinkSettings, "portal_link_secret", DEVELOPMENT_PORTAL_SECRET, "notifications and casework"),
    (PortalEmailSettings, "portal_link_secret", DEVELOPMENT_PORTAL_SECRET, "notifications and casework"),
]
# What each class needs besides its secret.
OTHERS: dict[type[SharedSettings], dict[str, str]] = {PortalEmailSettings: {"portal_url": "https://portal.agency.com"}}


def problems(settings_class: type[SharedSettings], **values: object) -> list[str]:
    given = {**BROKER, **OTHERS.get(settings_class, {}), **values}
    return [str(problem) for problem in settings_class.model_validate(given).production_problems()]


@pytest.mark.parametrize(("settings_class", "field", "development", "holders"), CASES)
def test_an_unset_or_development_secret_is_refused_naming_who_shares_it(
    settings_class: type[SharedSettings], field: str, development: str, holders: str
) -> None:
    unset = f"{field.upper()}: not set; the same random secret for {holders} (e.g. `openssl rand -hex 32`)"
    assert problems(settings_class) == [unset]
    assert problems(settings_class, **{field: development}) == [unset]


@pytest.mark.parametrize(("settings_class", "field", "development", "holders"), CASES)
def test_a_short_secret_is_refused_and_a_long_one_kept(
    settings_class: type[SharedSettings], field: str, development: str, holders: str
) -> None:
    short = "秘" * (MIN_SECRET_LENGTH - 1)
    assert problems(settings_class, **{field: short}) == [
        f"{field.upper()}: too short ({MIN_SECRET_LENGTH - 1} characters); use at least {MIN_SECRET_LENGTH} random ones"
    ]
    assert problems(settings_class, **{field: "x" * MIN_SECRET_LENGTH}) == []


def test_the_broker_problem_still_comes_first() -> None:
    assert [p.split(":")[0] for p in problems(PortalLinkSettings, amqp_url="amqp://guest:guest@rabbit/")] == [
        "AMQP_URL",
        "PORTAL_LINK_SECRET",
    ]


NOT_HTTPS = "PORTAL_URL: not https:// (nor http:// on this machine): the portal's links are credentials"


@pytest.mark.parametrize(
    ("portal_url", "refused"),
    [
        (None, "PORTAL_URL: not set; the default http://localhost:8003 would send clients' links to their own machine"),
        ("http://portal.agency.com", NOT_HTTPS),
        ("ftp://portal.agency.com", NOT_HTTPS),
        ("https://portal.agency.com", None),
        ("http://localhost:8003", None),  # docker compose on one machine: browsers treat localhost as secure
        ("http://127.0.0.1:8003", None),
    ],
)
def test_production_wants_the_portals_public_https_address(portal_url: str | None, refused: str | None) -> None:
    values = {"portal_link_secret": "x" * MIN_SECRET_LENGTH}
    given = {**BROKER, **values, **({} if portal_url is None else {"portal_url": portal_url})}
    found = [str(problem) for problem in PortalEmailSettings.model_validate(given).production_problems()]
    assert found == ([] if refused is None else [refused])
