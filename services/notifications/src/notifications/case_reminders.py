"""What a case reminder says: fixed text per kind (and, for the client's chasers, per status), in the reader's
language: the client's for the client's reminders, the staff's (STAFF_LANGUAGE) for the owner's.

The text is ours: it takes the reference, the dates, the fee and the consultant's name from the event, never a staff
note (the event carries none), and an owner's alert names no client (a reference and a console link instead).
"""

from datetime import datetime

from agency_shared.events import CaseReminderDueData
from agency_shared.forms import Locale
from notifications.case_status import deadline_text
from notifications.emails import verified_time

CLIENT_REMINDERS: dict[Locale, dict[str, str]] = {
    "en": {
        "documents_chaser": "We are still waiting for your documents. Please send the documents on the list your "
        "consultant sent you, so that we can continue with your application.",
        "documents_chaser_revision": "Some of your documents still need to be completed or corrected. Please send "
        "the corrected documents your consultant asked for, so that we can continue with your application.",
        "fee_chaser": "The verification fee of {fee} is still due. Please note that it is not refunded if Tencent "
        "rejects the application.",
        "fee_chaser_unknown": "The verification fee is still due; your consultant sent you the amount. Please note "
        "that it is not refunded if Tencent rejects the application.",
        "renewal": "Your account's annual verification is due on {expires}, in {days} days. Your consultant will "
        "contact you about the renewal.",
    },
    "zh-CN": {
        "documents_chaser": "我们仍在等待您的材料。请按您的顾问发送的清单提交材料，以便我们继续办理您的申请。",
        "documents_chaser_revision": "部分材料仍需补充或更正。请按您的顾问的要求提交更正后的材料，"
        "以便我们继续办理您的申请。",
        "fee_chaser": "认证费用 {fee} 仍待支付。请注意：如腾讯审核未通过，认证费用不予退还。",
        "fee_chaser_unknown": "认证费用仍待支付，金额已由您的顾问告知。请注意：如腾讯审核未通过，认证费用不予退还。",
        "renewal": "您的公众号年审将于 {expires} 到期（还有 {days} 天）。您的顾问将与您联系办理年审。",
    },
}

OWNER_REMINDERS: dict[Locale, dict[str, str]] = {
    "en": {
        "tencent_deadline": "Tencent's deadline for more information on case {reference} is {deadline}: {left}.",
        "overdue": "Case {reference} is overdue: in status {status} since {since}, its time limit passed on {limit}.",
        "lapse": "The verification of case {reference} expired on {expires} and no renewal is recorded.",
    },
    "zh-CN": {
        "tencent_deadline": "案件 {reference} 的腾讯补充材料截止日期为 {deadline}：{left}。",
        "overdue": "案件 {reference} 已超时：自 {since} 起处于 {status} 状态，时限已于 {limit} 届满。",
        "lapse": "案件 {reference} 的认证已于 {expires} 到期，尚无年审记录。",
    },
}
DAYS_LEFT: dict[Locale, tuple[str, str, str]] = {  # (today, one day, n days)
    "en": ("today is the last day", "1 day left", "{days} days left"),
    "zh-CN": ("今天是最后一天", "还剩 1 天", "还剩 {days} 天"),
}
CLIENT_KINDS = frozenset({"documents_chaser", "fee_chaser", "renewal"})


def client_reminder(data: CaseReminderDueData) -> str:
    """The client's reminder in their language."""
    locale = data.locale
    key: str = data.kind
    if key == "documents_chaser" and data.status == "documents_need_revision":
        key = "documents_chaser_revision"
    if key == "fee_chaser" and not data.fee:
        key = "fee_chaser_unknown"
    expires = deadline_text(data.expires_at, locale) if data.expires_at else ""
    return CLIENT_REMINDERS[locale][key].format(fee=data.fee or "", expires=expires, days=data.days)


def owner_reminder(data: CaseReminderDueData, locale: Locale) -> str:
    """The owner's reminder in the staff's language: the reference and dates, no client."""
    today, one, many = DAYS_LEFT[locale]
    left = today if data.days == 0 else one if data.days == 1 else many.format(days=data.days)
    return OWNER_REMINDERS[locale][data.kind].format(
        reference=data.reference,
        deadline=deadline_text(data.tencent_deadline, locale) if data.tencent_deadline else "",
        left=left,
        status=data.status,
        since=_moment(data.status_since),
        limit=_moment(data.time_limit) if data.time_limit else "",
        expires=deadline_text(data.expires_at, locale) if data.expires_at else "",
    )


def _moment(value: datetime) -> str:
    return verified_time(value)
