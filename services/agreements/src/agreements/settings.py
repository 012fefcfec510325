"""The agreements service's settings."""

from pydantic import SecretStr

from agency_chassis.settings import MongoSettings, SharedSettings


class AgreementsSettings(SharedSettings, MongoSettings):
    agreements_port: int = 8001
    # Bearer token for the staff API; without it every staff request is refused.
    staff_api_token: SecretStr | None = None
