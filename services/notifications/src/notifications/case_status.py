"""What the client is told when a staff member moves their case: fixed text per status, in the client's language.

Only these statuses email the client (casework.md's table); an enquiry's statuses and any status not listed
send nothing. The text is ours: it takes the consultant's name, the fee, Tencent's deadline and the verification's
expiry from the event, never the staff's ``reason`` (an internal note), and for a rejection a fixed sentence per
reason code.
"""

from datetime import date

from agency_shared.events import CaseStatusChangedData, RejectionReason
from agency_shared.forms import Locale

# Each status the client hears about and what they are told. A status whose text needs a value the event does
# not carry says the variant without it (``*_unknown``), except triage: without a consultant there is no news.
UPDATES: dict[Locale, dict[str, str]] = {
    "en": {
        "triage": "A consultant, {consultant}, is handling your application.",
        "awaiting_documents": "We are waiting for your documents: your consultant will send you the list of the "
        "documents needed.",
        "documents_in_review": "Documents received; we are checking them.",
        "documents_need_revision": "Some of your documents need to be completed or corrected: your consultant will "
        "tell you which item and why.",
        "awaiting_fee": "The verification fee is {fee}. Please note that it is not refunded if Tencent rejects the "
        "application.",
        "awaiting_fee_unknown": "The verification fee is now due; your consultant will send you the amount. Please "
        "note that it is not refunded if Tencent rejects the application.",
        "account_setup": "Please scan the QR code with the administrator's WeChat.",
        "submitted_to_tencent": "Submitted to Tencent; review usually takes 5–10 business days.",
        "tencent_requested_info": "Tencent has asked for more information: your consultant will tell you what is "
        "needed. The deadline is {deadline}.",
        "tencent_requested_info_unknown": "Tencent has asked for more information: your consultant will tell you "
        "what is needed and by when.",
        "rejected": "Tencent did not approve the application: {rejection} Your consultant will contact you about "
        "the options (resubmitting, or closing the application).",
        "verified": "Your account is verified.",
        "live": "Your account is live: your consultant will send you the handover pack.",
        "renewal_due": "Annual verification due on {expires}.",
        "renewal_due_unknown": "Your account's annual verification is due soon; your consultant will contact you.",
        "renewed": "Your account's annual verification is renewed.",
        "lapsed": "Your account's annual verification has lapsed. Please contact your consultant as soon as possible.",
        "on_hold": "Your application is on hold; your consultant will contact you.",
        "withdrawn": "Your application is withdrawn, as agreed with you.",
    },
    "zh-CN": {
        "triage": "您的顾问 {consultant} 将负责跟进。",
        "awaiting_documents": "我们正在等待您的材料：您的顾问将把所需材料清单发送给您。",
        "documents_in_review": "材料已收到，正在审核。",
        "documents_need_revision": "部分材料需要补充或更正：您的顾问将告知需补充或更正的材料及原因。",
        "awaiting_fee": "认证费用为 {fee}。请注意：如腾讯审核未通过，认证费用不予退还。",
        "awaiting_fee_unknown": "现需支付认证费用，您的顾问将告知金额。请注意：如腾讯审核未通过，认证费用不予退还。",
        "account_setup": "请管理员用微信扫码确认。",
        "submitted_to_tencent": "已提交腾讯审核，审核通常需要 5–10 个工作日。",
        "tencent_requested_info": "腾讯要求补充材料：您的顾问将告知所需内容。截止日期为 {deadline}。",
        "tencent_requested_info_unknown": "腾讯要求补充材料：您的顾问将告知所需内容及截止日期。",
        "rejected": "审核未通过：{rejection}您的顾问将与您联系后续方案（重新提交或结束申请）。",
        "verified": "您的公众号已通过认证。",
        "live": "您的公众号已上线：您的顾问将向您发送交付说明。",
        "renewal_due": "年审将于 {expires} 到期。",
        "renewal_due_unknown": "您的公众号年审即将到期，您的顾问将与您联系。",
        "renewed": "您的公众号已完成年审。",
        "lapsed": "您的公众号年审已过期，请尽快联系您的顾问。",
        "on_hold": "您的申请已暂停，您的顾问将与您联系。",
        "withdrawn": "您的申请已按与您的约定撤回。",
    },
}

# Why Tencent rejected it, one fixed sentence per code (an unknown or missing code reads as "other").
REJECTIONS: dict[Locale, dict[RejectionReason, str]] = {
    "en": {
        "illegible_seal": "the company seal on a document could not be read.",
        "missing_pages": "pages of a document were missing.",
        "naming_rules": "the account name breaks Tencent's naming rules.",
        "inconsistent_details": "the company's details differ between the documents.",
        "missing_statements": "a required statement was missing.",
        "other": "Tencent gave another reason, which your consultant will explain.",
    },
    "zh-CN": {
        "illegible_seal": "文件上的公司印章不清晰。",
        "missing_pages": "文件缺少页面。",
        "naming_rules": "账号名称不符合腾讯的命名规则。",
        "inconsistent_details": "各文件中的公司信息不一致。",
        "missing_statements": "缺少所需的声明。",
        "other": "其他原因，您的顾问将向您说明。",
    },
}

# The statuses that email the client (the rest, an enquiry's among them, send nothing).
CLIENT_STATUSES = frozenset(status for status in UPDATES["en"] if not status.endswith("_unknown"))


def deadline_text(day: date, locale: Locale) -> str:
    return f"{day.year}年{day.month}月{day.day}日" if locale == "zh-CN" else day.isoformat()


def client_update(data: CaseStatusChangedData) -> str | None:
    """What the client is told about the case's new status, in their language; None: nothing to tell them."""
    status, locale = data.current, data.locale
    if status not in CLIENT_STATUSES or (status == "triage" and not data.consultant):
        return None
    texts = UPDATES[locale]
    values = {
        "consultant": data.consultant or "",
        "fee": data.fee or "",
        "deadline": deadline_text(data.tencent_deadline, locale) if data.tencent_deadline else "",
        "expires": deadline_text(data.expires_at, locale) if data.expires_at else "",
        "rejection": REJECTIONS[locale][data.rejection_reason or "other"],
    }
    needed = {"awaiting_fee": data.fee, "tencent_requested_info": data.tencent_deadline,
              "renewal_due": data.expires_at}  # fmt: skip
    if status in needed and not needed[status]:
        status = f"{status}_unknown"
    return texts[status].format(**values)
