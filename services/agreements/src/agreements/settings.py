"""The agreements service's settings."""

import base64
import binascii

from pydantic import Field, SecretStr, field_validator, model_validator

from agency_chassis.settings import CommaSeparated, MongoSettings, SettingProblem, split_commas
from agency_shared.checkpoints import public_keys_by_id
from agreements.signing import (
    DEVELOPMENT_SEED,
    GENERATE_KEY,
    InvalidSigningKey,
    LedgerKey,
    cryptography_installed,
    parse_seed,
)
from agreements.staff_tokens import LEGACY_CLIENT, parse_staff_tokens

MIN_TOKEN_LENGTH = 32
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "placeholder", "example")
GENERATE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 - a command, not a secret


class AgreementsSettings(MongoSettings):
    agreements_port: int = 8001
    # Bearer token for the staff API, the client named "staff" (what earlier versions had: one shared token).
    staff_api_token: SecretStr | None = None
    # One bearer token per machine client, "casework=...,crm=...": a client is revoked by removing its pair (and
    # restarting). Without any token every staff request is refused.
    staff_api_tokens: SecretStr | None = None
    # The ledger's Ed25519 private key (PEM, or the base64 of its 32-byte seed): signs checkpoints and receipts.
    ledger_signing_key: SecretStr | None = None
    # Public keys (base64, raw 32 bytes) checkpoints may also be signed with: every retired signing key's, so
    # what it signed still verifies; for `verify`, which holds no private key, the current one's too.
    ledger_public_keys: CommaSeparated = Field(default_factory=list)
    # A checkpoint at every link whose sequence is a multiple of this, and one of the head every interval.
    ledger_checkpoint_every: int = Field(default=100, ge=1)
    ledger_checkpoint_interval_seconds: int = Field(default=3600, ge=1)

    @field_validator("ledger_public_keys", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("ledger_public_keys")
    @classmethod
    def _raw_public_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            try:
                raw = base64.b64decode(key, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("a public key is not base64") from None
            if len(raw) != 32:
                raise ValueError("a public key is not 32 bytes (base64 of the raw Ed25519 public key)")
        return value

    @field_validator("staff_api_tokens")
    @classmethod
    def _client_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_staff_tokens(value.get_secret_value())  # its message names a pair or a client, never a token
        return value

    @model_validator(mode="after")
    def _one_staff_client(self) -> "AgreementsSettings":
        if self.staff_api_token is not None and LEGACY_CLIENT in self._listed_tokens():
            raise ValueError(f"STAFF_API_TOKENS names {LEGACY_CLIENT!r}, which is STAFF_API_TOKEN's: set one of them")
        return self

    def _listed_tokens(self) -> dict[str, str]:
        return parse_staff_tokens(self.staff_api_tokens.get_secret_value()) if self.staff_api_tokens else {}

    def staff_clients(self) -> dict[str, str]:
        """Each machine client of the staff API and its bearer token: STAFF_API_TOKENS, and STAFF_API_TOKEN as
        the client ``staff``."""
        legacy = self.staff_api_token.get_secret_value() if self.staff_api_token else ""
        return {**({LEGACY_CLIENT: legacy} if legacy else {}), **self._listed_tokens()}

    def ledger_key(self) -> LedgerKey:
        """The signing key; outside production without LEDGER_SIGNING_KEY, the fixed development key."""
        secret = self.ledger_signing_key.get_secret_value() if self.ledger_signing_key else ""
        seed = parse_seed(secret) if secret else DEVELOPMENT_SEED
        current = LedgerKey(seed)
        listed = (base64.b64decode(key) for key in self.ledger_public_keys)
        return LedgerKey(seed, tuple(raw for raw in listed if raw != current.public_key))

    def verifying_keys(self) -> dict[str, bytes]:
        """The public keys a checkpoint may be signed with, by key id: LEDGER_SIGNING_KEY's and LEDGER_PUBLIC_KEYS;
        LEDGER_PUBLIC_KEYS alone where no private key is given (the verify job)."""
        if self.ledger_signing_key is None and self.ledger_public_keys:
            return public_keys_by_id([{"public_key": key} for key in self.ledger_public_keys])
        return self.ledger_key().public_keys()

    def production_problems(self) -> list[SettingProblem]:
        problems = super().production_problems()
        problems += self._staff_api_token_problems()
        if problem := self._ledger_signing_key_problem():
            problems.append(problem)
        return problems

    def _ledger_signing_key_problem(self) -> SettingProblem | None:
        """Never quotes the key: the reason may be printed and logged."""
        secret = self.ledger_signing_key.get_secret_value() if self.ledger_signing_key else ""
        if not secret:
            return SettingProblem("LEDGER_SIGNING_KEY", f"missing; the ledger's Ed25519 key (e.g. {GENERATE_KEY})")
        try:
            seed = parse_seed(secret)
        except InvalidSigningKey as exc:
            return SettingProblem("LEDGER_SIGNING_KEY", f"{exc}; generate one (e.g. {GENERATE_KEY})")
        if seed == DEVELOPMENT_SEED:
            return SettingProblem("LEDGER_SIGNING_KEY", f"the development key; generate one (e.g. {GENERATE_KEY})")
        if not cryptography_installed():
            return SettingProblem("LEDGER_SIGNING_KEY", "the cryptography package is not installed to sign with it")
        return None

    def _staff_api_token_problems(self) -> list[SettingProblem]:
        """At least one token, each strong; never quotes a token: the reasons may be printed and logged."""
        clients = self.staff_clients()
        if not clients:
            reason = f"missing (and no STAFF_API_TOKENS); the staff API's bearer token (e.g. {GENERATE_TOKEN})"
            return [SettingProblem("STAFF_API_TOKEN", reason)]
        problems: list[SettingProblem] = []
        for name, token in clients.items():
            weak = _token_problem(token)
            if weak is None:
                continue
            if name == LEGACY_CLIENT and self.staff_api_token is not None:
                problems.append(SettingProblem("STAFF_API_TOKEN", weak))
            else:
                problems.append(SettingProblem("STAFF_API_TOKENS", f"client {name!r}: {weak}"))
        if len(set(clients.values())) < len(clients):
            problems.append(SettingProblem("STAFF_API_TOKENS", "two clients share a token; give each its own"))
        return problems


def _token_problem(token: str) -> str | None:
    if any(word in token.lower() for word in PLACEHOLDER_WORDS):
        return f"still a placeholder; generate one (e.g. {GENERATE_TOKEN})"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"too short ({len(token)} characters); use at least {MIN_TOKEN_LENGTH} random ones"
    return None
