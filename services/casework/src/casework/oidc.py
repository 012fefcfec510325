"""Single sign-on through OpenID Connect (Authlib's httpx OAuth2 client): the authorisation code flow with PKCE,
the state kept in a signed cookie (no server-side session before sign-in), the email read from the provider's
UserInfo endpoint with the access token the token endpoint gave us directly over TLS."""

import json
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

import authlib.deprecate
import httpx

with warnings.catch_warnings():
    # Authlib 1.9 prefers the httpx2 fork and warns on import when it falls back to httpx, which we use. (Its
    # deprecate module, imported first, installs an "always" filter that would beat this one.)
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from casework.settings import CaseworkSettings

CALLBACK_PATH = "/console/login/oidc/callback"
STATE_MAX_AGE_SECONDS = 600


class SingleSignOnRefused(Exception):
    """The provider's answer cannot sign anyone in: a bad state, a failed exchange, no verified email."""


@dataclass(frozen=True)
class Started:
    url: str
    # JSON to keep in the signed cookie until the callback: state, PKCE verifier, where to go afterwards.
    pending: str


class OpenIdProvider:
    def __init__(self, settings: CaseworkSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not (settings.oidc_issuer and settings.oidc_client_id):
            raise ValueError("OIDC_ISSUER and OIDC_CLIENT_ID are needed for single sign-on")
        self._issuer = settings.oidc_issuer.rstrip("/")
        self._client_id = settings.oidc_client_id
        secret = settings.oidc_client_secret
        self._client_secret = secret.get_secret_value() if secret else None
        self._redirect_uri = settings.console_url.rstrip("/") + CALLBACK_PATH
        self._transport = transport
        self._metadata: dict[str, Any] | None = None

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self._client_id,
            client_secret=self._client_secret,
            scope="openid email profile",
            redirect_uri=self._redirect_uri,
            code_challenge_method="S256",
            timeout=10.0,
            transport=self._transport,
        )

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document; raises httpx.HTTPError when it cannot be fetched, ValueError when it
        is not JSON, SingleSignOnRefused when it is not an object naming our issuer."""
        if self._metadata is None:
            async with httpx.AsyncClient(transport=self._transport, timeout=10.0) as http:
                answer = await http.get(f"{self._issuer}/.well-known/openid-configuration")
                answer.raise_for_status()
                metadata: object = answer.json()
            if not isinstance(metadata, dict):
                raise SingleSignOnRefused("the provider's metadata is not a JSON object")
            issuer = metadata.get("issuer")
            if not isinstance(issuer, str) or issuer.rstrip("/") != self._issuer:
                raise SingleSignOnRefused("the provider's metadata names another issuer")
            self._metadata = metadata
        return self._metadata

    async def start(self, next_path: str) -> Started:
        metadata = await self.metadata()
        state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"], state=state, code_verifier=verifier
            )
        return Started(url, json.dumps({"state": state, "verifier": verifier, "next": next_path}))

    async def finish(self, pending: str, state: str, code: str) -> tuple[str, str]:
        """The verified email the provider vouches for, and where to go next."""
        try:
            kept = json.loads(pending)
        except ValueError:
            raise SingleSignOnRefused("unreadable state") from None
        if not isinstance(kept, dict) or not secrets.compare_digest(str(kept.get("state", "")), state):
            raise SingleSignOnRefused("state mismatch")
        try:
            metadata = await self.metadata()
            async with self._client() as client:
                verifier = kept["verifier"]
                await client.fetch_token(metadata["token_endpoint"], code=code, code_verifier=verifier)
                answer = await client.get(metadata["userinfo_endpoint"])
                answer.raise_for_status()
                claims = answer.json()
        except (OAuthError, httpx.HTTPError, KeyError, TypeError, ValueError) as error:
            raise SingleSignOnRefused(f"the exchange failed: {type(error).__name__}") from None
        email = claims.get("email") if isinstance(claims, dict) else None
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise SingleSignOnRefused("no verified email")
        return email, str(kept.get("next", ""))
