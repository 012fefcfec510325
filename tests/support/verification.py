"""Verifying an applicant's address in tests as the applicant does: the link in the email, the page, the button."""

import re
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx

from tests.support.servers import Inbox

# The verification link as the email's plain text carries it (any base URL: INTAKE_BASE_URL).
LINK = re.compile(r"https?://\S+/verify/[A-Za-z0-9_.\-]+")


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    return body.get_content() if body is not None else ""


def is_verification(message: EmailMessage) -> bool:
    """Whether ``message`` is an email-verification email (the only client email sent before verification)."""
    return LINK.search(plain_text(message)) is not None


def verification_emails(inbox: Inbox, address: str) -> list[EmailMessage]:
    return [message for message in inbox.to(address) if is_verification(message)]


def link_in(message: EmailMessage) -> str:
    found = LINK.search(plain_text(message))
    assert found, "no verification link in the email"
    return found.group(0)


async def verification_link(inbox: Inbox, address: str, timeout: float = 15) -> str:
    """The link of the (first) verification email ``address`` received, waiting for it."""
    await inbox.wait_for(lambda _: bool(verification_emails(inbox, address)), timeout)
    return link_in(verification_emails(inbox, address)[0])


async def verify_address(inbox: Inbox, address: str, intake: httpx.AsyncClient, timeout: float = 15) -> str:
    """Open the link of ``address``'s verification email on ``intake`` and press the button; returns the link.

    Only the path is used: ``intake`` is a client of the intake under test, wherever INTAKE_BASE_URL points.
    """
    link = await verification_link(inbox, address, timeout)
    path = urlsplit(link).path
    page = await intake.get(path)
    assert page.status_code == 200, page.text
    assert f'action="{path}' in page.text, page.text
    confirmed = await intake.post(path, data={"confirm": "yes"})
    assert confirmed.status_code == 200, confirmed.text
    return link
