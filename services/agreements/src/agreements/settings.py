"""The agreements service's settings."""

from pydantic import SecretStr

from agency_chassis.settings import MongoSettings, SettingProblem

MIN_TOKEN_LENGTH = 32
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "placeholder", "example")
GENERATE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 - a command, not a secret


class AgreementsSettings(MongoSettings):
    agreements_port: int = 8001
    # Bearer token for the staff API; without it every staff request is refused.
    staff_api_token: SecretStr | None = None

    def production_problems(self) -> list[SettingProblem]:
        problems = super().production_problems()
        if problem := self._staff_api_token_problem():
            problems.append(problem)
        return problems

    def _staff_api_token_problem(self) -> SettingProblem | None:
        """Never quotes the token: the reason may be printed and logged."""
        token = self.staff_api_token.get_secret_value() if self.staff_api_token else ""
        if not token:
            return SettingProblem("STAFF_API_TOKEN", f"missing; the staff API's bearer token (e.g. {GENERATE_TOKEN})")
        if any(word in token.lower() for word in PLACEHOLDER_WORDS):
            return SettingProblem("STAFF_API_TOKEN", f"still a placeholder; generate one (e.g. {GENERATE_TOKEN})")
        if len(token) < MIN_TOKEN_LENGTH:
            reason = f"too short ({len(token)} characters); use at least {MIN_TOKEN_LENGTH} random ones"
            return SettingProblem("STAFF_API_TOKEN", reason)
        return None
