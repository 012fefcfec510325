"""The pages' words in English and Simplified Chinese, and country names in both."""

import contextlib
import gettext
from functools import cache

import pycountry

from agency_shared.forms import SERVICE_LABELS, Locale

LOCALES: tuple[Locale, ...] = ("en", "zh-CN")

TEXT: dict[Locale, dict[str, str]] = {
    "en": {
        "language_name": "English",
        "site": "WeChat Agency",
        "apply_title": "WeChat Official Account Application form",
        "contact_title": "Get in touch, we'd love to hear from you.",
        "nav_apply": "Apply for an Official Account",
        "nav_contact": "Get in touch",
        "section_registration": "Official Account Registration Information",
        "section_company": "Company Information",
        "section_notes": "Notes",
        "section_agreement": "Service Agreement",
        "required": "required",
        "account.type": "Account type",
        "account.type.subscription": "Subscription Account",
        "account.type.service": "Service Account",
        "account.name": "Account name (2–30 characters)",
        "account.description": "Account description (4–120 characters)",
        "account.category": "Category",
        "operator.name": "Operator's name",
        "operator.email": "Operator's email",
        "operator.phone": "Operator's phone (international, e.g. +44 20 7946 0958)",
        "company.legal_name": "Company legal name",
        "company.registration_number": "Company registration number",
        "company.country": "Country of registration",
        "company.address": "Registered address",
        "company.website": "Website",
        "company.industry": "Industry",
        "notes": "Notes",
        "choose": "Choose…",
        "agreement.accepted": "I have read and accept the WeChat Official Account Admin Platform Service Agreement",
        "agreement_version": "Version {version} · SHA-256 {sha256}",
        "submit_application": "Submit application",
        "name": "Your name",
        "email": "Email",
        "company": "Company",
        "services": "What can we help with?",
        "message": "Message",
        "submit_enquiry": "Send",
        "success": "Thank you! Your submission has been received!",
        "failure": "Oops! Something went wrong while submitting the form :(",
        "reference": "Your reference: {id}",
        "fax": "Leave this field empty",
        "sending": "Sending…",
        "agreement_changed": "The Service Agreement has changed. Please read the current version and accept it again.",
        "unavailable": "We could not take your submission just now. Nothing was lost: please try again in a moment.",
        "rate_limited": "Too many submissions from your address. Please wait a minute and try again.",
        "too_large": "The form is too large to send.",
        "unreadable": "The form could not be read. Please reload the page and send it again.",
        "back": "Back to the form",
        "key_reused": (
            "This form was sent before with different answers (for example after going back and changing them). "
            "Nothing of this submission was recorded: check your answers below and send the form again."
        ),
    },
    "zh-CN": {
        "language_name": "简体中文",
        "site": "WeChat Agency",
        "apply_title": "微信公众号申请表",
        "contact_title": "联系我们，期待您的来信。",
        "nav_apply": "申请公众号",
        "nav_contact": "联系我们",
        "section_registration": "公众号注册信息",
        "section_company": "公司信息",
        "section_notes": "备注",
        "section_agreement": "服务协议",
        "required": "必填",
        "account.type": "账号类型",
        "account.type.subscription": "订阅号",
        "account.type.service": "服务号",
        "account.name": "公众号名称（2–30 个字符）",
        "account.description": "功能介绍（4–120 个字符）",
        "account.category": "类目",
        "operator.name": "运营者姓名",
        "operator.email": "运营者邮箱",
        "operator.phone": "运营者电话（国际格式，如 +86 10 1234 5678）",
        "company.legal_name": "公司法定名称",
        "company.registration_number": "公司注册号",
        "company.country": "注册国家/地区",
        "company.address": "注册地址",
        "company.website": "网站",
        "company.industry": "行业",
        "notes": "备注",
        "choose": "请选择…",
        "agreement.accepted": "我已阅读并接受《微信公众平台服务协议》",
        "agreement_version": "版本 {version} · SHA-256 {sha256}",
        "submit_application": "提交申请",
        "name": "您的姓名",
        "email": "邮箱",
        "company": "公司",
        "services": "您需要哪些服务？",
        "message": "留言",
        "submit_enquiry": "发送",
        "success": "感谢您！我们已收到您的提交！",
        "failure": "哎呀！提交表单时出错了 :(",
        "reference": "您的编号：{id}",
        "fax": "请勿填写此项",
        "sending": "正在提交…",
        "agreement_changed": "服务协议已更新。请阅读最新版本并重新接受。",
        "unavailable": "暂时无法接收您的提交，数据未丢失，请稍后重试。",
        "rate_limited": "您的提交过于频繁，请稍等一分钟后重试。",
        "too_large": "表单内容过大，无法提交。",
        "unreadable": "无法读取表单内容，请刷新页面后重新提交。",
        "back": "返回表单",
        "key_reused": (
            "此表单此前已用不同的内容提交过（例如返回上一页后修改了内容）。本次提交未被记录：请核对以下内容后重新提交。"
        ),
    },
}

for _locale, _labels in SERVICE_LABELS.items():
    TEXT[_locale].update({f"services.{service.value}": label for service, label in _labels.items()})

# Field error messages in Chinese by pydantic error type; English uses pydantic's own message.
ERRORS_ZH: dict[str, str] = {
    "missing": "此项为必填项",
    "string_too_short": "内容太短",
    "string_too_long": "内容太长",
    "value_error": "格式不正确",
    "literal_error": "请勾选以接受协议",
    "enum": "请选择一个有效选项",
    "url_parsing": "请输入有效的网址（以 http:// 或 https:// 开头）",
    "url_scheme": "请输入有效的网址（以 http:// 或 https:// 开头）",
    "string_pattern_mismatch": "格式不正确",
    "too_short": "请至少选择一项",
    "extra_forbidden": "不接受此字段",
}


def error_message(locale: Locale, error_type: str, english: str) -> str:
    if locale == "zh-CN":
        return ERRORS_ZH.get(error_type, "此项无效") + ("" if error_type in ERRORS_ZH else f"（{english}）")
    return english


def pick_locale(requested: str | None, accept_language: str | None) -> Locale:
    if requested == "zh-CN":
        return "zh-CN"
    if requested == "en":
        return "en"
    if accept_language and accept_language.lower().lstrip().startswith("zh"):
        return "zh-CN"
    return "en"


@cache
def countries(locale: Locale) -> list[tuple[str, str]]:
    """(alpha-2, name) pairs sorted by name in ``locale``."""
    translate = gettext.NullTranslations().gettext
    if locale == "zh-CN":
        with contextlib.suppress(OSError):  # without the catalogue, English names
            translate = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["zh_CN"]).gettext
    pairs = [(c.alpha_2, translate(c.name)) for c in pycountry.countries]
    return sorted(pairs, key=lambda pair: pair[1])
