"""What the web forms submit: the Official Account application and the enquiry."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl

from agency_shared.text import MULTI_LINE, SINGLE_LINE, CountryCode, PhoneNumber, Sha256Hex, bounded

Locale = Literal["en", "zh-CN"]


class FormModel(BaseModel):
    """Strict about unknown fields, so a typo in a frontend fails loudly instead of losing data."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountType(StrEnum):
    SUBSCRIPTION = "subscription"
    SERVICE = "service"


class OfficialAccount(FormModel):
    type: AccountType
    name: Annotated[str, bounded(2, 30), SINGLE_LINE]
    description: Annotated[str, bounded(4, 120), SINGLE_LINE]
    category: Annotated[str, bounded(1, 64), SINGLE_LINE] | None = None


class Operator(FormModel):
    name: Annotated[str, bounded(1, 100), SINGLE_LINE]
    email: EmailStr
    phone: PhoneNumber


class Company(FormModel):
    legal_name: Annotated[str, bounded(1, 200), SINGLE_LINE]
    registration_number: Annotated[str, bounded(1, 64), SINGLE_LINE]
    country: CountryCode
    address: Annotated[str, bounded(1, 500), MULTI_LINE]
    website: HttpUrl | None = None
    industry: Annotated[str, bounded(1, 100), SINGLE_LINE] | None = None


class AgreementAcceptance(FormModel):
    """The agreement the applicant was shown and ticked: identified by version and the hash of its text."""

    version: Annotated[str, bounded(1, 32), SINGLE_LINE]
    sha256: Sha256Hex
    accepted: Literal[True] = Field(description="Must be true: the applicant accepts the Service Agreement.")


class ApplicationForm(FormModel):
    """An Official Account application as the form posts it."""

    account: OfficialAccount
    operator: Operator
    company: Company
    notes: Annotated[str, bounded(0, 2000), MULTI_LINE] | None = None
    agreement: AgreementAcceptance
    locale: Locale = "en"


class EnquiryService(StrEnum):
    OFFICIAL_ACCOUNT = "official_account"
    MARKETING_ADVERTISING = "marketing_advertising"
    PAY_ECOMMERCE = "pay_ecommerce"
    CHINA_MARKETING = "china_marketing"


SERVICE_LABELS: dict[Locale, dict[EnquiryService, str]] = {
    "en": {
        EnquiryService.OFFICIAL_ACCOUNT: "WeChat Official Account Registration & Maintenance",
        EnquiryService.MARKETING_ADVERTISING: "WeChat Marketing & Advertising",
        EnquiryService.PAY_ECOMMERCE: "WeChat Pay & E-commerce",
        EnquiryService.CHINA_MARKETING: "China Marketing",
    },
    "zh-CN": {
        EnquiryService.OFFICIAL_ACCOUNT: "微信公众号注册与运营",
        EnquiryService.MARKETING_ADVERTISING: "微信营销与广告",
        EnquiryService.PAY_ECOMMERCE: "微信支付与电商",
        EnquiryService.CHINA_MARKETING: "中国市场营销",
    },
}


class EnquiryForm(FormModel):
    """A 'Get in touch' enquiry."""

    name: Annotated[str, bounded(1, 100), SINGLE_LINE]
    email: EmailStr
    company: Annotated[str, bounded(1, 200), SINGLE_LINE] | None = None
    services: Annotated[list[EnquiryService], Field(min_length=1, max_length=4)]
    message: Annotated[str, bounded(1, 5000), MULTI_LINE]
    locale: Locale = "en"
