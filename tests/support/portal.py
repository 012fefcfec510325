"""The client portal in tests: an agreement catalog with a newer version, agreements' public API served without its
consumers, and a client's browser holding a portal session."""

import json
import re
import tomllib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from tests.support.servers import uvicorn_serving

NEW_VERSION = "2"
# What version 2 adds to version 1's text (Chinese included: the text is hashed byte for byte).
NEW_CLAUSE = "\n\n12. Documents uploaded through the client portal. 通过客户门户上传的材料仅用于本次认证。"


def catalog_with_new_version(folder: Path) -> Path:
    """``folder`` holding the bundled version 1 and a version 2 in effect since yesterday; returned."""
    folder.mkdir(parents=True, exist_ok=True)
    bundled = resources.files("agency_shared") / "agreement_texts" / "v1.toml"
    text = bundled.read_text(encoding="utf-8")
    (folder / "v1.toml").write_text(text, encoding="utf-8")
    first = tomllib.loads(text)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    lines = [
        f"id = {json.dumps(first['id'])}",
        f'version = "{NEW_VERSION}"',
        f"title = {json.dumps(first['title'])}",
        f"effective_date = {yesterday}",
        f"text = {json.dumps(first['text'] + NEW_CLAUSE, ensure_ascii=False)}",
    ]
    (folder / "v2.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def served_without_lifespan(app: FastAPI) -> AbstractAsyncContextManager[str]:
    """``app``'s routes that need no broker or database (agreements' public agreement texts), on a loopback port."""
    return uvicorn_serving(app, lifespan="off")


@dataclass
class PortalBrowser:
    """A client's browser on the portal over HTTPS (httpx keeps no cookie for a dotless host: kept here)."""

    http: httpx.AsyncClient
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def session(self) -> str | None:
        return self.cookies.get("portal")

    async def open(self, link: str) -> httpx.Response:
        opened = await self.http.get(link)
        self.keep(opened)
        return opened

    def keep(self, response: httpx.Response) -> None:
        """The cookies ``response`` sets (and removes, with Max-Age=0)."""
        for cookie in response.headers.get_list("set-cookie"):
            name, _, rest = cookie.partition("=")
            value = rest.split(";")[0].strip('"')
            if "max-age=0" in cookie.lower():
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def _headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    async def get(self, path: str) -> httpx.Response:
        answer = await self.http.get(path, headers=self._headers())
        self.keep(answer)
        return answer

    async def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        answer = await self.http.post(path, data=data, headers=self._headers())
        self.keep(answer)
        return answer


@asynccontextmanager
async def portal_browser(app: FastAPI, client_ip: str = "198.51.100.23") -> AsyncIterator[PortalBrowser]:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50234))
    headers = {"User-Agent": 'Mozilla/5.0 (portal test; "quoted" <b>ua</b>)', "Accept": "text/html"}
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver", headers=headers) as http:
        yield PortalBrowser(http)


def form_token_in(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found, "no form_token on the page"
    return found.group(1)


def csrf_token_in(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no csrf_token on the page"
    return found.group(1)


class _Anchors(HTMLParser):
    """The targets of an HTML page's links, unescaped as a mail reader reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value is not None]


def portal_links_in(message: EmailMessage, portal_url: str) -> tuple[list[str], list[str]]:
    """The portal links of a received email: those in its plain text, and the targets of its HTML's anchors that are
    portal links (an href escaped wrongly is not one)."""
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    link = re.compile(re.escape(portal_url.rstrip("/")) + r"/portal/open\?t=[A-Za-z0-9._\-]+")
    anchors = _Anchors()
    anchors.feed(html.get_content())
    return link.findall(plain.get_content()), [href for href in anchors.hrefs if link.fullmatch(href)]


def token_of(link: str) -> str:
    """The signed token of a portal link."""
    [token] = parse_qs(urlsplit(link).query)["t"]
    return token
