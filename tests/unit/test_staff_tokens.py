"""The staff API's machine clients: parsing STAFF_API_TOKENS, finding a token's client, production's rules."""

import pytest
from pydantic import AmqpDsn, MongoDsn, SecretStr, ValidationError

from agency_chassis.startup import effective_configuration, settings_problems
from agreements.settings import AgreementsSettings
from agreements.staff_tokens import MalformedStaffTokens, StaffTokens, parse_staff_tokens

CASEWORK = "cw-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
CRM = "crm-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
LEGACY = "k3Jx9vQ2mT7pL4wZ8rN1bY6cH5dF0gSa"


def production(staff_api_token: str | None = None, staff_api_tokens: str | None = None) -> AgreementsSettings:
    return AgreementsSettings(
        environment="production",
        amqp_url=AmqpDsn("amqp://agency:secret@rabbitmq.internal:5672/"),
        mongodb_url=MongoDsn("mongodb://agreements:secret@mongo.internal:27017/?replicaSet=rs0"),
        staff_api_token=SecretStr(staff_api_token) if staff_api_token is not None else None,
        staff_api_tokens=SecretStr(staff_api_tokens) if staff_api_tokens is not None else None,
    )


def token_problems(settings: AgreementsSettings) -> list[str]:
    return [str(p) for p in settings_problems(settings) if p.variable.startswith("STAFF_API_TOKEN")]


def test_pairs_are_parsed_and_a_token_may_hold_equals_signs() -> None:
    assert parse_staff_tokens(f" casework={CASEWORK} ,, crm={CRM}== ,") == {"casework": CASEWORK, "crm": f"{CRM}=="}
    assert parse_staff_tokens("") == {}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("casework", "pair 1 is not client=token"),
        (f"casework={CASEWORK},crm=", "pair 2 is not client=token"),
        (f"CaseWork={CASEWORK}", "pair 1: a client name is lower-case"),
        (f"case work={CASEWORK}", "pair 1: a client name is lower-case"),
        (f"={CASEWORK}", "pair 1: a client name is lower-case"),
        (f"crm={CASEWORK},crm={CRM}", "client 'crm' is named twice"),
    ],
)
def test_malformed_pairs_are_refused_without_quoting_a_token(value: str, says: str) -> None:
    with pytest.raises(MalformedStaffTokens, match=says) as refused:
        parse_staff_tokens(value)
    assert CASEWORK not in str(refused.value)
    with pytest.raises(ValidationError) as invalid:
        AgreementsSettings(environment="local", staff_api_tokens=SecretStr(value))
    assert says in str(invalid.value)
    assert CASEWORK not in str(invalid.value)


def test_a_token_is_found_by_its_client_and_no_other_is() -> None:
    tokens = StaffTokens({"casework": CASEWORK, "crm": CRM})
    assert tokens.client_of(CASEWORK) == "casework"
    assert tokens.client_of(CRM) == "crm"
    for wrong in ("", CASEWORK[:-1], CASEWORK + "x", CASEWORK.upper(), "casework", f"casework={CASEWORK}"):
        assert tokens.client_of(wrong) is None
    assert StaffTokens({}).client_of("") is None


def test_the_shared_token_is_the_client_named_staff_beside_the_others() -> None:
    settings = AgreementsSettings(
        environment="local", staff_api_token=SecretStr(LEGACY), staff_api_tokens=SecretStr(f"casework={CASEWORK}")
    )
    assert settings.staff_clients() == {"staff": LEGACY, "casework": CASEWORK}
    assert AgreementsSettings(environment="local").staff_clients() == {}
    with pytest.raises(ValidationError, match="names 'staff'"):
        AgreementsSettings(
            environment="local", staff_api_token=SecretStr(LEGACY), staff_api_tokens=SecretStr(f"staff={CASEWORK}")
        )


def test_tokens_are_masked_in_the_logged_configuration() -> None:
    shown = effective_configuration(
        AgreementsSettings(environment="local", staff_api_tokens=SecretStr(f"casework={CASEWORK}"))
    )
    assert shown["STAFF_API_TOKENS"] == "***"
    assert CASEWORK not in str(shown)


def test_production_accepts_client_tokens_alone_or_with_the_shared_one() -> None:
    assert token_problems(production(staff_api_tokens=f"casework={CASEWORK},crm={CRM}")) == []
    assert token_problems(production(staff_api_token=LEGACY, staff_api_tokens=f"casework={CASEWORK}")) == []
    assert token_problems(production(staff_api_token=LEGACY)) == []


def test_production_needs_at_least_one_token() -> None:
    [problem] = token_problems(production())
    assert problem.startswith("STAFF_API_TOKEN: missing")
    [problem] = token_problems(production(staff_api_tokens=" , "))
    assert problem.startswith("STAFF_API_TOKEN: missing")


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("short-but-random-9f8e", "client 'crm': too short (21 characters)"),
        ("changeme" * 5, "client 'crm': still a placeholder"),
        ("an-example-token-that-is-long-enough-42", "client 'crm': still a placeholder"),
    ],
)
def test_production_refuses_a_weak_client_token_naming_the_client_not_the_token(token: str, says: str) -> None:
    [problem] = token_problems(production(staff_api_tokens=f"casework={CASEWORK},crm={token}"))
    assert problem.startswith("STAFF_API_TOKENS: ")
    assert says in problem
    assert token not in problem


def test_production_refuses_two_clients_sharing_a_token() -> None:
    [problem] = token_problems(production(staff_api_token=CASEWORK, staff_api_tokens=f"casework={CASEWORK}"))
    assert problem == "STAFF_API_TOKENS: two clients share a token; give each its own"
