"""The form pages as a browser without JavaScript sees them: plain HTML and form posts."""

import re
from collections.abc import Mapping
from urllib.parse import urlencode

from intake.main import create_app
from intake.settings import IntakeSettings
from tests.support.apps import client, serving
from tests.support.data import CURRENT, application, flat_form
from tests.support.events import ENQUIRY
from tests.support.settings import settings_with

FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}


def form_pairs(body: Mapping[str, object]) -> str:
    return urlencode(flat_form(body))


def attribute(html: str, element_id: str, name: str) -> str | None:
    tag = re.search(rf'<[^>]*id="{re.escape(element_id)}"[^>]*>', html)
    assert tag, f"no element #{element_id}"
    value = re.search(rf'{name}="([^"]*)"', tag.group(0))
    return value.group(1) if value else None


async def test_the_application_page_shows_the_agreement_and_accessible_fields(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        english = (await http.get("/")).text
        chinese = (await http.get("/?lang=zh-CN")).text
        by_header = (await http.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9"})).text
    assert '<html lang="en">' in english
    assert "Official Account Registration Information" in english
    assert CURRENT.text.split("\n")[2][:60] in english
    assert f'name="agreement.sha256" value="{CURRENT.sha256}"' in english
    assert f'name="agreement.version" value="{CURRENT.version}"' in english
    assert '<label for="f-account-name">' in english
    assert attribute(english, "f-account-name", "aria-describedby") == "e-account-name"
    assert attribute(english, "f-fax", "tabindex") == "-1"  # the honeypot is out of keyboard reach
    assert '<html lang="zh-CN">' in chinese
    assert "公众号注册信息" in chinese
    assert '<option value="CN">中国</option>' in chinese
    assert '<html lang="zh-CN">' in by_header
    assert 'href="?lang=zh-CN"' in english
    assert 'href="?lang=en"' in chinese


async def test_a_form_post_without_javascript_answers_with_the_success_page(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    body = {**application(), "idempotency_key": "no-js-5f0c2a9e-7d41-4c8b"}
    async with serving(app), client(app) as http:
        response = await http.post("/?lang=zh-CN", content=form_pairs(body), headers=FORM)
        again = await http.post("/?lang=zh-CN", content=form_pairs(body), headers=FORM)
    assert response.status_code == 202
    assert "感谢您！我们已收到您的提交！" in response.text
    reference = re.search(r"您的编号：([0-9a-f-]{36})", response.text)
    assert reference
    assert reference.group(1) in again.text  # a resubmitted page (refresh, double click) is the same application


async def test_invalid_form_post_shows_each_error_beside_its_field_and_keeps_the_values(
    intake_settings: IntakeSettings,
) -> None:
    app = create_app(intake_settings)
    body = application({"company.country": "ZZ", "operator.email": "nope", "account.name": "枫"})
    del body["agreement"]["accepted"]
    async with serving(app), client(app) as http:
        page = await http.post("/", content=form_pairs(body), headers=FORM)
        chinese = await http.post("/?lang=zh-CN", content=form_pairs(body), headers=FORM)
    html = page.text
    assert page.status_code == 422
    assert "Oops! Something went wrong while submitting the form :(" in html
    for field in ("company-country", "operator-email", "account-name", "agreement-accepted"):
        assert attribute(html, f"f-{field}", "aria-invalid") == "true", field
        assert re.search(rf'<p class="error" id="e-{field}"[^>]*>[^<]+</p>', html), field
    assert "ISO 3166-1 alpha-2" in html
    assert 'value="Maple Tea Trading Ltd. 枫叶茶贸易有限公司"' in html  # what was typed is kept
    assert attribute(html, "f-company-legal_name", "aria-invalid") is None
    assert "哎呀！提交表单时出错了 :(" in chinese.text
    assert "此项为必填项" in chinese.text


async def test_a_stale_agreement_shows_the_current_one_again(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        page = await http.post("/", content=form_pairs(application({"agreement.sha256": "b" * 64})), headers=FORM)
    assert page.status_code == 409
    assert "The Service Agreement has changed" in page.text
    assert f'value="{CURRENT.sha256}"' in page.text
    assert attribute(page.text, "f-agreement-accepted", "checked") is None  # must be ticked again


async def test_the_contact_page_posts_without_javascript(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        page = (await http.get("/contact?lang=zh-CN")).text
        sent = await http.post("/contact", content=form_pairs(ENQUIRY), headers=FORM)
        empty = await http.post("/contact", content=form_pairs({"name": "", "email": ""}), headers=FORM)
    assert "微信支付与电商" in page
    assert sent.status_code == 202
    assert "Thank you! Your submission has been received!" in sent.text
    assert empty.status_code == 422
    for field in ("name", "email", "message"):
        assert re.search(rf'<p class="error" id="e-{field}"[^>]*>[^<]+</p>', empty.text), field
    assert re.search(r'<p class="error" id="e-services"[^>]*>[^<]+</p>', empty.text)


def referenced_urls(html: str) -> list[str]:
    """Every URL the page makes a browser load or go to: src, href, action, and url() in style."""
    return re.findall(r'(?:src|href|action)\s*=\s*"([^"]*)"', html) + re.findall(r"url\(([^)]*)\)", html)


def third_party(urls: list[str]) -> list[str]:
    # Relative references stay on intake's own origin; "//host" and "scheme:" ones do not.
    return [url for url in urls if re.match(r"^\s*([a-z][a-z0-9+.-]*:|//)", url, re.IGNORECASE)]


def csp_directives(header: str) -> dict[str, list[str]]:
    parts = (directive.split() for directive in header.split(";") if directive.strip())
    return {name: values for name, *values in parts}


async def test_every_page_forbids_framing_inline_script_sniffing_and_caching(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        pages = {
            "GET /": await http.get("/"),
            "GET /contact": await http.get("/contact?lang=zh-CN"),
            "POST / (accepted)": await http.post("/", content=form_pairs(application()), headers=FORM),
            "POST / (invalid)": await http.post("/", content=form_pairs({"notes": "x"}), headers=FORM),
            "POST /contact (accepted)": await http.post("/contact", content=form_pairs(ENQUIRY), headers=FORM),
            "POST /contact (415)": await http.post("/contact", json=ENQUIRY),
        }
        style = await http.get("/static/forms.css")
    assert [page.status_code for page in pages.values()] == [200, 200, 202, 422, 202, 415]
    for name, page in pages.items():
        assert page.headers["content-type"].startswith("text/html"), name
        csp = csp_directives(page.headers["content-security-policy"])
        assert csp["default-src"] == ["'none'"], name
        assert csp["script-src"] == ["'self'"], name  # no 'unsafe-inline', no other host
        assert csp["style-src"] == ["'self'"], name
        assert csp["frame-ancestors"] == ["'none'"], name
        assert page.headers["x-content-type-options"] == "nosniff", name
        assert page.headers["referrer-policy"] == "same-origin", name
        assert page.headers["cache-control"] == "no-store", name
        # Under that policy an inline script or style would not run: the pages must have none.
        assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", page.text), name
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page.text), name
        assert third_party(referenced_urls(page.text)) == [], name
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")
    assert '<link rel="stylesheet" href="/static/forms.css">' in pages["GET /"].text


async def test_production_serves_no_docs_page_that_loads_a_cdn_but_keeps_the_openapi_document(
    intake_settings: IntakeSettings,
) -> None:
    production = create_app(settings_with(intake_settings, environment="production"))
    development = create_app(intake_settings)
    async with client(production) as http, client(development) as dev:
        docs = {path: await http.get(path) for path in ("/docs", "/redoc", "/docs/oauth2-redirect")}
        document = await http.get("/openapi.json")
        dev_docs = await dev.get("/docs")
    assert {path: r.status_code for path, r in docs.items()} == dict.fromkeys(docs, 404)
    assert document.status_code == 200
    assert "/v1/applications" in document.json()["paths"]
    # Outside production the docs stay, with FastAPI's CDN links (what the check above would catch).
    assert dev_docs.status_code == 200
    assert third_party(referenced_urls(dev_docs.text))
