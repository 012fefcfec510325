"""Sending email: the ``Mailer`` port, its pooled SMTP adapter, and which failures are worth a retry."""

import asyncio
import contextlib
import copy
from email import errors, policy
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
from aiolimiter import AsyncLimiter

from notifications.settings import NotificationsSettings


class DeliveryFailed(Exception):
    """The SMTP server did not take the message. ``permanent`` (a 5xx reply) means retrying is pointless."""

    def __init__(self, reason: str, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> str:
        """Return the server's reply once it accepted the message; raise ``DeliveryFailed`` otherwise."""
        ...


class SmtpMailer:
    """Sends over a pool of open SMTP connections (STARTTLS and login when configured), at most N per second.

    A connection is reused across messages; one the server has closed while idle is
    replaced once, transparently. After any failed transaction the connection is
    dropped rather than reused in an unknown state.
    """

    def __init__(self, settings: NotificationsSettings) -> None:
        self._settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.smtp_pool_size)
        self._rate = AsyncLimiter(settings.smtp_max_per_second, 1) if settings.smtp_max_per_second else None

    async def send(self, message: EmailMessage) -> str:
        if self._rate is not None:
            await self._rate.acquire()
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                reply = await self._send_on(client, message)
            except (aiosmtplib.SMTPNotSupported, ValueError, UnicodeError, errors.MessageError) as exc:
                # The message cannot be written for this server (an address needs SMTPUTF8 it does not
                # offer, or a header cannot be serialised): sending it again would fail the same way.
                raise DeliveryFailed(_describe(exc), permanent=True) from exc
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [r.code for r in exc.recipients]
                raise DeliveryFailed(_describe(exc), permanent=all(c >= 500 for c in codes)) from exc
            except aiosmtplib.SMTPResponseException as exc:
                raise DeliveryFailed(_describe(exc), permanent=exc.code >= 500) from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                # Refused or dropped connections and timeouts: the server may be back soon.
                raise DeliveryFailed(_describe(exc), permanent=False) from exc
            return reply

    async def _send_on(self, client: aiosmtplib.SMTP | None, message: EmailMessage) -> str:
        if client is not None and client.is_connected:
            try:
                return await self._transaction(client, message)
            except aiosmtplib.SMTPServerDisconnected:
                pass  # closed while idle: open a fresh one below
        client = await self._connect()
        return await self._transaction(client, message)

    async def _transaction(self, client: aiosmtplib.SMTP, message: EmailMessage) -> str:
        try:
            _, reply = await _send_message(client, message)
        except BaseException:
            await _close(client)
            raise
        self._idle.append(client)
        return reply

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout_seconds,
        )
        await client.connect()
        return client

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            await _close(client)


def needs_smtputf8(message: EmailMessage, headers: tuple[str, ...] = ("From", "To", "Cc", "Reply-To")) -> bool:
    """Whether an address in ``headers`` has a non-ASCII local part (domains are in IDNA form)."""
    return any(
        not address.addr_spec.isascii()
        for name in headers
        for header in message.get_all(name, [])
        for address in header.addresses
    )


def _without(message: EmailMessage, header: str) -> EmailMessage:
    trimmed = copy.copy(message)
    del trimmed[header]
    return trimmed


async def _send_message(client: aiosmtplib.SMTP, message: EmailMessage) -> tuple[object, str]:
    """``send_message``, but SMTPUTF8 when any header needs it, not only the envelope.

    aiosmtplib picks SMTPUTF8 from the envelope alone, so a staff email whose Reply-To is
    ``用户@example.com`` would be serialised as ASCII, which cannot hold that address.
    """
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    utf8 = needs_smtputf8(message)
    if utf8 and not client.supports_extension("smtputf8"):
        if needs_smtputf8(message, ("From", "To")):
            raise aiosmtplib.SMTPNotSupported("an address needs SMTPUTF8, which this server does not offer")
        # Only where to reply needs it (a staff email about a client whose address has a non-ASCII
        # local part): the email still goes, without the Reply-To; its text names the address.
        message = _without(message, "Reply-To")
        utf8 = False
    eight_bit = client.supports_extension("8bitmime")
    serialising = (policy.SMTPUTF8 if utf8 else policy.SMTP).clone(cte_type="8bit" if eight_bit else "7bit")
    sender = message["From"].addresses[0].addr_spec
    recipients = [address.addr_spec for header in message.get_all("To", []) for address in header.addresses]
    options = (["SMTPUTF8"] if utf8 else []) + (["BODY=8BITMIME"] if eight_bit else [])
    return await client.sendmail(sender, recipients, message.as_bytes(policy=serialising), mail_options=options)


async def _close(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        if client.is_connected:
            await client.quit()
    client.close()


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
