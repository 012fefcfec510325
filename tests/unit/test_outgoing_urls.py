"""Outgoing URLs in the logs: httpx's request lines keep a URL's origin, never the credential in its path or query."""

import io
import json

import httpx
import pytest

from agency_chassis.logs import configure_logging, url_origin


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://hooks.zapier.com/hooks/catch/123456/aBc9xYz/", "https://hooks.zapier.com/…"),
        ("https://oapi.dingtalk.com/robot/send?access_token=91b2", "https://oapi.dingtalk.com/…"),
        ("https://crm.example?token=s3cr3t", "https://crm.example/…"),
        ("https://crm.example/#frag", "https://crm.example/…"),
        ("https://user:pa55word@crm.example/", "https://crm.example/"),
        ("https://crm.example:8443/in", "https://crm.example:8443/…"),
        ("https://crm.example", "https://crm.example/"),
        ("https://[2606:4700::1111]/h", "https://[2606:4700::1111]/…"),
        ("https://crm.example:99999/in", "[a URL]"),  # no port: nothing of it is trusted
        ("https://[::1/in", "[a URL]"),
    ],
)
def test_a_url_is_kept_as_its_origin(url: str, kept: str) -> None:
    assert url_origin(url) == kept


@pytest.mark.usefixtures("restored_logging")
async def test_httpx_request_lines_name_the_origin_only() -> None:
    buffer = io.StringIO()
    configure_logging("casework", "INFO", stream=buffer)
    configure_logging("casework", "INFO", stream=buffer)  # a second app in the process: still one filter
    answers = httpx.MockTransport(lambda request: httpx.Response(204))
    async with httpx.AsyncClient(transport=answers) as http:
        await http.post("https://hooks.slack.com/services/T0001/B0002/slackSecret03")
        await http.post("https://user:pa55word@crm.example:8443/in?token=s3cr3t")
    events = [json.loads(line)["event"] for line in buffer.getvalue().splitlines()]
    assert events == [
        'HTTP Request: POST https://hooks.slack.com/… "HTTP/1.1 204 No Content"',
        'HTTP Request: POST https://crm.example:8443/… "HTTP/1.1 204 No Content"',
    ]
