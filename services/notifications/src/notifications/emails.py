"""Composing the emails from events with Jinja2 templates (autoescaped HTML plus plain text)."""

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, AddressHeader, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, parseaddr
from typing import Any, cast

import idna
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from agency_shared.events import (
    AcceptanceConfirmed,
    AgreementRecorded,
    ApplicationSubmitted,
    CaseReminderDue,
    CaseStatusChanged,
    EnquiryReceived,
    Event,
    HumanCheck,
    LedgerCheckpointed,
    PortalLinkRequested,
    derived_id,
)
from agency_shared.forms import SERVICE_LABELS, Locale
from agency_shared.receipts import Receipt

_templates = Environment(
    loader=PackageLoader("notifications", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class AddressNeedsSmtpUtf8(ValueError):
    """An address whose local part is not ASCII: it can only be sent where the SMTP server offers SMTPUTF8."""


# Display names are written as atoms (RFC 5322 atext without "=" and "?") where they can be, the
# rest as RFC 2047 encoded words, whose base64 hides every quote, backslash, angle bracket and
# comma from a reader's address parser. A run of words that are not atoms is one encoded word:
# readers disagree about the space between two adjacent encoded words (RFC 2047 drops it,
# Python 3.11 keeps it), and between an encoded word and an atom every reader keeps it. Such a
# word can exceed RFC 2047's 75 characters (100 Chinese characters make 412), still far below
# RFC 5322's 998 per line; readers decode it.
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/^_`{|}~]+")


def _encoded_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def _name_words(name: str) -> list[str]:
    words: list[str] = []
    run: list[str] = []
    for word in name.split(" "):
        if _ATOM.fullmatch(word):
            if run:
                words.append(_encoded_word(" ".join(run)))
                run = []
            words.append(word)
        else:
            run.append(word)
    if run:
        words.append(_encoded_word(" ".join(run)))
    return words


def _mailbox_words(address: Address, utf8: bool) -> list[str]:
    addr_spec = address.addr_spec
    if not utf8 and not addr_spec.isascii():
        raise AddressNeedsSmtpUtf8("an address with a non-ASCII local part needs SMTPUTF8")
    name = address.display_name
    if not name:
        return [addr_spec]
    return [*_name_words(name), f"<{addr_spec}>"]


class WireSafeAddressFolding:
    """Address headers written out by us: every reader parses them back to exactly the addresses set.

    CPython 3.11's folder drops the quotes and escapes of a display name it has to fold
    (``email.policy.SMTP`` folds at 78 characters), so a name such as
    ``<attacker@evil.example> \\ please reply here ...`` became the address a reply goes to.
    Here a name is atoms or encoded words, and a header is folded only between them.
    """

    def fold(self, *, policy: Policy) -> str:
        header = cast(AddressHeader, self)
        if any(group.display_name is not None for group in header.groups):
            return cast(str, super().fold(policy=policy))  # type: ignore[misc]  # groups: we never write one
        words: list[str] = []
        for number, address in enumerate(header.addresses):
            words += _mailbox_words(address, bool(getattr(policy, "utf8", False)))
            if number < len(header.addresses) - 1:
                words[-1] += ","
        limit = policy.max_line_length or 998
        lines = [f"{cast(BaseHeader, self).name}:"]
        for number, word in enumerate(words):
            if number and len(lines[-1]) + 1 + len(word) > limit:
                lines.append("")  # folding whitespace: a reader unfolds it back to the one space
            lines[-1] += f" {word}"
        return policy.linesep.join(lines) + policy.linesep


class HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header class once instead of for every header.

    ``HeaderRegistry`` builds a new class (``type(...)``) each time a header is set or read,
    always the same one for a name: under load that was a tenth of notifications' CPU.
    Address headers fold with ``WireSafeAddressFolding``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = super().__getitem__(name)
            if issubclass(made, AddressHeader):
                made = type(made.__name__, (WireSafeAddressFolding, made), {})
            self._made[key] = made
        return made


# CPython (3.11) folds a header that mixes ASCII words with encoded words by
# leaving a trailing space before the fold, which readers show as a double
# space ("Ltd.  枫叶茶"). Our headers are bounded well below 998 characters, so
# folding only at RFC 5322's hard limit avoids the defect.
EMAIL_POLICY = policy.default.clone(max_line_length=998, header_factory=HeaderClasses())

SUBJECTS: dict[str, dict[Locale, str]] = {
    "staff_new_application": {
        "en": "New Official Account application: {company} ({account})",
        "zh-CN": "新的公众号申请：{company}（{account}）",
    },
    "staff_new_enquiry": {
        "en": "New enquiry from {name} ({company})",
        "zh-CN": "来自{name}（{company}）的新咨询",
    },
    "enquiry_autoresponse": {
        "en": "Thank you! Your submission has been received!",
        "zh-CN": "感谢您！我们已收到您的咨询",
    },
    "staff_client_unreachable": {
        "en": "Client not reachable: {name} ({what} {short_id})",
        "zh-CN": "无法联系客户：{name}（{what} {short_id}）",
    },
    "email_verification": {
        "en": "Please confirm your email address",
        "zh-CN": "请确认您的邮箱地址",
    },
    "enquiry_verification": {
        "en": "Please confirm your email address",
        "zh-CN": "请确认您的邮箱地址",
    },
    "ledger_checkpoint": {
        "en": "Ledger checkpoint: link {sequence}",
        "zh-CN": "账本检查点：第 {sequence} 条",
    },
    "client_confirmation": {
        "en": "Thank you! Your submission has been received! (application {short_id})",
        "zh-CN": "感谢您！我们已收到您的申请（申请编号 {short_id}）",
    },
    "portal_link": {
        "en": "Your personal link to your application ({reference})",
        "zh-CN": "您的申请专属链接（编号 {reference}）",
    },
    "case_status": {
        "en": "Update on your WeChat Official Account application ({reference})",
        "zh-CN": "您的微信公众号申请进度更新（编号 {reference}）",
    },
    "case_reminder": {
        "en": "Reminder about your WeChat Official Account application ({reference})",
        "zh-CN": "您的微信公众号申请提醒（编号 {reference}）",
    },
    "staff_case_reminder": {
        "en": "Case {reference}: {what}",
        "zh-CN": "案件 {reference}：{what}",
    },
}


@dataclass(frozen=True)
class Attachment:
    content: bytes
    maintype: str
    subtype: str
    filename: str


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_SPACES = re.compile(r" {2,}")


def header_text(value: str) -> str:
    """User text made safe for a header: one line, and no encoded-word that a mail client would decode.

    Intake already refuses line breaks; this is the second line of defence, and the
    only one against "=?utf-8?b?...?=" in a name, which readers would show decoded.
    """
    # Runs of spaces become one: readers collapse them in a display name anyway.
    return _SPACES.sub(" ", _CONTROL.sub(" ", value).replace("=?", "=\u200b?").strip())


def mailbox(display_name: str, address: str) -> Address:
    """An ``Address`` whose domain is in IDNA (ASCII) form; the local part is kept as it is, even non-ASCII.

    Built from its parts, as ``Address(addr_spec=...)`` refuses a non-ASCII local part.
    """
    username, at, domain = address.rpartition("@")
    if not at or not username or not domain:
        raise ValueError("not an email address: no local part or domain")
    if not domain.isascii():
        domain = idna.encode(domain, uts46=True).decode("ascii")
    return Address(display_name=display_name, username=username, domain=domain)


def person(name: str, address: str) -> Address:
    return mailbox(header_text(name), address)


def parse_address(value: str) -> Address:
    """``"Name <user@host>"`` or ``user@host`` (a setting) as a header-safe ``Address``."""
    name, addr = parseaddr(value)
    return mailbox(header_text(name), addr)


def message_id(event: Event, template: str, recipient: str) -> str:
    # Derived from what makes this email unique, so a resend carries the same id
    # and mail systems can tell it is the same message.
    return f"<{derived_id(str(event.event_id), template, recipient.lower())}@wechat-agency>"


# What the staff emails say about the human check a submission passed at intake (``HumanCheck``).
HUMAN_CHECKS: dict[Locale, dict[HumanCheck, str]] = {
    "en": {
        "altcha": "passed (ALTCHA proof of work)",
        "none": "none passed (no valid ALTCHA solution: no JavaScript, an API client, or an expired or reused one)",
        "off": "not asked (the CAPTCHA is switched off)",
    },
    "zh-CN": {
        "altcha": "已通过（ALTCHA 工作量证明）",
        "none": "未通过（没有有效的 ALTCHA 解答：未启用 JavaScript、API 客户端，或解答已过期或被重复使用）",
        "off": "未要求（人机验证已关闭）",
    },
}


# What they say about a submission whose event does not state it (one from before the check existed).
NOT_RECORDED: dict[Locale, str] = {"en": "not recorded", "zh-CN": "未记录"}


# What they say instead about a submission that passed none and was held until its address was verified.
RELEASED: dict[Locale, str] = {
    "en": "none passed; held until the address was verified ({at})",
    "zh-CN": "未通过；已暂缓，直到邮箱地址确认（{at}）",
}


def verified_time(verified_at: datetime) -> str:
    """When an address was verified, as the staff emails say it (UTC, to the second)."""
    return verified_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_check_text(check: HumanCheck | None, locale: Locale, verified_at: datetime | None) -> str:
    """The staff emails' line on the human check; a held submission's says that (and when) its address was verified."""
    if check is None:
        return NOT_RECORDED[locale]
    if verified_at is None:
        return HUMAN_CHECKS[locale][check]
    return RELEASED[locale].format(at=verified_time(verified_at))


def _compose(
    *,
    template: str,
    locale: Locale,
    subject: str,
    sender: Address,
    recipient: Address,
    event: Event,
    context: dict[str, Any],
    reply_to: Address | tuple[Address, ...] | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> EmailMessage:
    message = EmailMessage(policy=EMAIL_POLICY)
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = recipient
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = format_datetime(event.occurred_at)
    message["Message-ID"] = message_id(event, template, recipient.addr_spec)
    message["X-Correlation-ID"] = event.correlation_id
    text = _templates.get_template(f"{template}.{locale}.txt").render(**context)
    html = _templates.get_template(f"{template}.{locale}.html").render(**context)
    message.set_content(text, charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    for attachment in attachments:
        message.add_attachment(
            attachment.content, maintype=attachment.maintype, subtype=attachment.subtype, filename=attachment.filename
        )
    # Set after the parts exist: making the message multipart moves Content-* headers into the first part.
    message["Content-Language"] = locale
    return message


def staff_new_application(
    event: AgreementRecorded | ApplicationSubmitted,
    staff: str,
    mail_from: str,
    locale: Locale,
    verified_at: datetime | None = None,
) -> EmailMessage:
    """The full application for one staff address; ``verified_at``: it was held until then (no human check passed)."""
    data = event.data
    form = data.application
    if form is None:  # an agreement.recorded of an earlier agreements (notify_recording never asks for it)
        raise ValueError(f"{event.event_type} {event.event_id} carries no application")
    operator = form.operator
    subject = SUBJECTS["staff_new_application"][locale].format(
        company=header_text(form.company.legal_name), account=header_text(form.account.name)
    )
    return _compose(
        template="staff_new_application",
        locale=locale,
        subject=subject,
        sender=parse_address(mail_from),
        recipient=parse_address(staff),
        reply_to=person(operator.name, str(operator.email)),
        event=event,
        context={
            "application_id": data.application_id,
            "form": form,
            "acceptance": data.acceptance,
            "human_check": human_check_text(data.human_check, locale, verified_at),
            "verified_at": verified_time(verified_at) if verified_at else None,
        },
    )


def email_verification(
    event: AgreementRecorded, link: str, days: int, mail_from: str, staff: Sequence[str] = ()
) -> EmailMessage:
    """Fixed text with the link that verifies the address, to the bare address: until the applicant confirms
    it, nothing they typed (not even their name) goes to it, so the form cannot make us mail anyone their text."""
    data = event.data
    return _compose(
        template="email_verification",
        locale=data.locale,
        subject=SUBJECTS["email_verification"][data.locale],
        sender=parse_address(mail_from),
        recipient=mailbox("", data.applicant_email),
        reply_to=tuple(parse_address(address) for address in staff),
        event=event,
        context={"link": link, "days": days},
    )


def client_confirmation(
    event: AcceptanceConfirmed, mail_from: str, staff: Sequence[str] = (), portal_link: str | None = None
) -> EmailMessage:
    """The confirmation, with the acceptance receipt summarised in the body and attached as JSON.

    Sent once the applicant verified the address, so it may repeat what they submitted. The
    client's reply goes to the staff (``MAIL_FROM`` is usually a no-reply address).
    """
    data = event.data
    receipt = Receipt.from_event(data)
    return _compose(
        template="client_confirmation",
        locale=data.locale,
        subject=SUBJECTS["client_confirmation"][data.locale].format(short_id=str(data.application_id)[:8]),
        sender=parse_address(mail_from),
        recipient=person(data.applicant_name, data.applicant_email),
        reply_to=tuple(parse_address(address) for address in staff),
        event=event,
        context={"data": data, "portal_link": portal_link},
        attachments=(
            Attachment(
                content=json.dumps(receipt.as_json(), ensure_ascii=False, indent=2).encode(),
                maintype="application",
                subtype="json",
                filename=f"receipt-{data.application_id}.json",
            ),
        ),
    )


def _enquiry_context(event: EnquiryReceived, locale: Locale, verified_at: datetime | None) -> dict[str, Any]:
    enquiry = event.data.enquiry
    services = [SERVICE_LABELS[locale][service] for service in enquiry.services]
    return {
        "enquiry_id": event.data.enquiry_id,
        "enquiry": enquiry,
        "services": services,
        "human_check": human_check_text(event.data.human_check, locale, verified_at),
        "verified_at": verified_time(verified_at) if verified_at else None,
    }


def staff_new_enquiry(
    event: EnquiryReceived, staff: str, mail_from: str, locale: Locale, verified_at: datetime | None = None
) -> EmailMessage:
    """The enquiry for one staff address; ``verified_at``: it was held until then (no human check passed)."""
    enquiry = event.data.enquiry
    return _compose(
        template="staff_new_enquiry",
        locale=locale,
        subject=SUBJECTS["staff_new_enquiry"][locale].format(
            name=header_text(enquiry.name), company=header_text(enquiry.company or "-")
        ),
        sender=parse_address(mail_from),
        recipient=parse_address(staff),
        reply_to=person(enquiry.name, str(enquiry.email)),
        event=event,
        context=_enquiry_context(event, locale, verified_at),
    )


def enquiry_autoresponse(event: EnquiryReceived, mail_from: str, staff: Sequence[str] = ()) -> EmailMessage:
    """Fixed text in the enquirer's language to the bare address: nothing else they typed (name, company,
    message), since nobody verified that the address is theirs (else the form relays anyone's text to anyone)."""
    locale = event.data.locale
    return _compose(
        template="enquiry_autoresponse",
        locale=locale,
        subject=SUBJECTS["enquiry_autoresponse"][locale],
        sender=parse_address(mail_from),
        recipient=mailbox("", str(event.data.enquiry.email)),
        reply_to=tuple(parse_address(address) for address in staff),
        event=event,
        context={"enquiry_id": event.data.enquiry_id},
    )


def enquiry_verification(
    event: EnquiryReceived, link: str, days: int, mail_from: str, staff: Sequence[str] = ()
) -> EmailMessage:
    """Instead of the autoresponse, for an enquiry that passed no human check: fixed text with the link that
    verifies the address, to the bare address (nothing the enquirer typed); the staff see the enquiry once it is
    confirmed."""
    locale = event.data.locale
    return _compose(
        template="enquiry_verification",
        locale=locale,
        subject=SUBJECTS["enquiry_verification"][locale],
        sender=parse_address(mail_from),
        recipient=mailbox("", str(event.data.enquiry.email)),
        reply_to=tuple(parse_address(address) for address in staff),
        event=event,
        context={"link": link, "days": days},
    )


SUBJECT_KINDS: dict[Locale, dict[str, str]] = {
    "en": {"application_id": "Application", "enquiry_id": "Enquiry"},
    "zh-CN": {"application_id": "申请", "enquiry_id": "咨询"},
}


def staff_client_unreachable(
    event: Event,
    subject: tuple[str, str],
    client: tuple[str, str],
    failed_subject: str,
    reason: str,
    staff: str,
    mail_from: str,
    locale: Locale,
) -> EmailMessage:
    """Tell the staff that a client email failed for good, so the lead is not lost silently.

    ``client`` is (name, address); ``failed_subject`` the failed email's subject, or its template
    when it could not even be composed.
    """
    kind, subject_id = subject
    what = SUBJECT_KINDS[locale][kind]
    name, address = client
    return _compose(
        template="staff_client_unreachable",
        locale=locale,
        subject=SUBJECTS["staff_client_unreachable"][locale].format(
            name=header_text(name or address), what=what, short_id=subject_id[:8]
        ),
        sender=parse_address(mail_from),
        recipient=parse_address(staff),
        event=event,
        context={
            "what": what,
            "subject_id": subject_id,
            "recipient_name": name,
            "recipient": address,
            "template": failed_subject,
            "reason": reason,
        },
    )


def ledger_checkpoint(event: LedgerCheckpointed, archive: str, mail_from: str) -> EmailMessage:
    """A signed checkpoint of the acceptance ledger to the archive mailbox: fixed text and the checkpoint's JSON
    (a line ``python -m agreements verify --anchors`` reads), kept where no database writer can edit it."""
    checkpoint = event.data.checkpoint
    return _compose(
        template="ledger_checkpoint",
        locale="en",
        subject=SUBJECTS["ledger_checkpoint"]["en"].format(sequence=checkpoint.sequence),
        sender=parse_address(mail_from),
        recipient=parse_address(archive),
        event=event,
        context={"checkpoint": checkpoint, "line": json.dumps(checkpoint.model_dump(), sort_keys=True)},
    )


def portal_link(
    event: PortalLinkRequested, link: str, expires_at: datetime, mail_from: str, staff: Sequence[str] = ()
) -> EmailMessage:
    """The new portal ``link`` a client asked for, in their language: fixed text, the link, when it expires and
    the reference, to the case's client (the address casework has on the case, never the one typed into the
    form)."""
    data = event.data
    return _compose(
        template="portal_link",
        locale=data.locale,
        subject=SUBJECTS["portal_link"][data.locale].format(reference=data.reference),
        sender=parse_address(mail_from),
        recipient=person(data.name, data.email),
        reply_to=tuple(parse_address(address) for address in staff),
        event=event,
        context={
            "link": link,
            "reference": data.reference,
            "expires": expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        },
    )


def case_status(
    event: CaseStatusChanged, update: str, mail_from: str, staff: Sequence[str] = (), portal_link: str | None = None
) -> EmailMessage:
    """The client's news of their case: fixed text (``update``, from ``case_status.client_update``), the account
    name, the reference and their personal ``portal_link`` (if any); never the staff's reason. Replies go to the
    staff."""
    data = event.data
    client = data.client
    if client is None:  # notify_case_status sends nothing then
        raise ValueError(f"{event.event_type} {event.event_id} names no client")
    reference = str(data.application_id or data.enquiry_id)
    return _compose(
        template="case_status",
        locale=data.locale,
        subject=SUBJECTS["case_status"][data.locale].format(reference=reference[:8]),
        sender=parse_address(mail_from),
        recipient=person(client.name, client.email),
        reply_to=tuple(parse_address(address) for address in staff),
        event=event,
        # The account name on one line: it is the applicant's text, and must not make lines of its own.
        context={
            "update": update,
            "account_name": header_text(data.account_name) if data.account_name else None,
            "reference": reference,
            "portal_link": portal_link,
        },
    )


# What the owner's reminder is about, in its subject.
OWNER_REMINDER_KINDS: dict[Locale, dict[str, str]] = {
    "en": {"tencent_deadline": "Tencent's deadline approaches", "overdue": "overdue", "lapse": "verification lapsed"},
    "zh-CN": {"tencent_deadline": "腾讯截止日期临近", "overdue": "已超时", "lapse": "认证已过期"},
}


def case_reminder(
    event: CaseReminderDue, reminder: str, mail_from: str, staff: Sequence[str] = (), portal_link: str | None = None
) -> EmailMessage:
    """A reminder to the client (a chaser, the renewal): fixed text (``reminder``, from
    ``case_reminders.client_reminder``), the account name, the reference and their personal ``portal_link`` (if
    any). Replies go to the staff."""
    data = event.data
    if data.client is None:  # notify_case_reminder sends nothing then
        raise ValueError(f"{event.event_type} {event.event_id} names no client")
    return _compose(
        template="case_reminder",
        locale=data.locale,
        subject=SUBJECTS["case_reminder"][data.locale].format(reference=data.reference),
        sender=parse_address(mail_from),
        recipient=person(data.client.name, data.client.email),
        reply_to=tuple(parse_address(address) for address in staff),
        event=event,
        context={
            "reminder": reminder,
            "account_name": header_text(data.account_name) if data.account_name else None,
            "reference": data.reference,
            "portal_link": portal_link,
        },
    )


def staff_case_reminder(
    event: CaseReminderDue, reminder: str, staff: str, mail_from: str, locale: Locale
) -> EmailMessage:
    """A reminder to the case's owner (or every staff address when it has none): the reference, the dates and the
    console link; no client's data."""
    data = event.data
    what = OWNER_REMINDER_KINDS[locale][data.kind]
    return _compose(
        template="staff_case_reminder",
        locale=locale,
        subject=SUBJECTS["staff_case_reminder"][locale].format(reference=data.reference, what=what),
        sender=parse_address(mail_from),
        recipient=parse_address(staff),
        event=event,
        context={"reminder": reminder, "reference": data.reference, "console_link": data.console_link},
    )
