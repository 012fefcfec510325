"""Unit tests of the abuse limits' building blocks."""

import json
from ipaddress import ip_network

import pytest
from starlette.requests import Request

from intake.guards import (
    MAX_NESTING,
    MalformedBody,
    client_address,
    fold_form_fields,
    origin_allowed,
    parse_submission,
    rate_limit_key,
)

PROXIES = [ip_network("10.0.0.0/8")]


def request(peer: str, headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request(
        {
            "type": "http",
            "client": (peer, 1234),
            "headers": raw,
            "scheme": "http",
            "server": ("intake", 80),
            "path": "/",
        }
    )


def test_forwarded_for_is_ignored_from_untrusted_peers() -> None:
    assert client_address(request("203.0.113.9", {"X-Forwarded-For": "1.2.3.4"}), PROXIES) == "203.0.113.9"
    assert client_address(request("10.1.1.1", {"X-Forwarded-For": "1.2.3.4"}), []) == "10.1.1.1"


def test_the_nearest_untrusted_hop_is_the_client_behind_trusted_proxies() -> None:
    # The client forged the first entry; the proxies appended what they saw.
    forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.0.0.2"}
    assert client_address(request("10.0.0.1", forwarded), PROXIES) == "198.51.100.7"


def test_garbage_in_forwarded_for_falls_back_to_the_peer() -> None:
    assert client_address(request("10.0.0.1", {"X-Forwarded-For": "not-an-ip"}), PROXIES) == "10.0.0.1"


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        # Spoofed entries on the left are never reached: the right-most untrusted hop is the client.
        ("6.6.6.6, 7.7.7.7, 198.51.100.7", "198.51.100.7"),
        ("10.0.0.9, 198.51.100.7, 10.0.0.2", "198.51.100.7"),  # a forged "trusted" address on the left
        ("not-an-ip, 198.51.100.7", "198.51.100.7"),
        ("198.51.100.7, not-an-ip", "10.0.0.1"),  # garbage where a proxy should have written: the peer
        ("198.51.100.7, 1.2.3.4:5678", "10.0.0.1"),
        ("198.51.100.7, ,  ,", "198.51.100.7"),
        ("2001:DB8::7", "2001:db8::7"),  # one spelling per address
        ("fe80::7%eth0", "fe80::7"),  # a zone id names the proxy's interface, not the client
        ("::ffff:198.51.100.7", "198.51.100.7"),  # IPv4-mapped IPv6 is the IPv4 client
        ("198.51.100.7, ::ffff:10.0.0.2", "198.51.100.7"),  # a trusted proxy, IPv4-mapped
        ("10.0.0.3, 10.0.0.2", "10.0.0.1"),  # only proxies: the nearest one
        ("", "10.0.0.1"),
    ],
)
def test_hostile_forwarded_for_behind_trusted_proxies(forwarded: str, client: str) -> None:
    assert client_address(request("10.0.0.1", {"X-Forwarded-For": forwarded}), PROXIES) == client


def test_every_forwarded_for_line_counts() -> None:
    # The client sent a line of its own; the proxy added its own line instead of extending it.
    scope_headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.7")]
    two_lines = Request({"type": "http", "client": ("10.0.0.1", 1), "headers": scope_headers, "path": "/"})
    assert client_address(two_lines, PROXIES) == "198.51.100.7"


def test_an_ipv4_mapped_peer_is_its_ipv4_address() -> None:
    # A server listening on "::" sees IPv4 clients as ::ffff:a.b.c.d.
    assert client_address(request("::ffff:10.0.0.1", {"X-Forwarded-For": "198.51.100.7"}), PROXIES) == "198.51.100.7"
    assert client_address(request("::ffff:203.0.113.9"), PROXIES) == "203.0.113.9"


def test_rate_limits_count_ipv6_clients_by_their_64() -> None:
    assert rate_limit_key("2001:db8:1:2:aaaa::1") == rate_limit_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert rate_limit_key("2001:db8:1:3::1") != rate_limit_key("2001:db8:1:2::1")
    assert rate_limit_key("198.51.100.7") == "198.51.100.7"
    assert rate_limit_key("unknown") == "unknown"


def test_form_fields_fold_into_the_json_shape() -> None:
    pairs = [
        ("account.name", "枫叶"),
        ("account.category", ""),
        ("agreement.accepted", "on"),
        ("services", "official_account"),
        ("services", "china_marketing"),
        ("company.website", ""),
    ]
    assert fold_form_fields(pairs) == {
        "account": {"name": "枫叶"},
        "agreement": {"accepted": True},
        "company": {},
        "services": ["official_account", "china_marketing"],
    }


def test_conflicting_form_names_are_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedBody):
        fold_form_fields([("account", "x"), ("account.name", "y")])


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"\xff", b"{"])
def test_json_that_is_not_an_object_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_submission(body, "application/json")


def test_same_origin_and_allowed_origins_may_post() -> None:
    headers = {"Host": "apply.agency.example", "Origin": "http://apply.agency.example"}
    assert origin_allowed(request("1.1.1.1", headers), [], PROXIES)
    assert origin_allowed(
        request("1.1.1.1", {**headers, "Origin": "https://www.agency.example"}), ["https://www.agency.example"], []
    )
    assert not origin_allowed(
        request("1.1.1.1", {**headers, "Origin": "https://evil.example"}), ["https://www.agency.example"], []
    )
    assert origin_allowed(request("1.1.1.1", {"Host": "x"}), [], [])  # no Origin: not a browser's cross-site post


def test_behind_a_tls_proxy_the_own_origin_is_what_the_proxy_says() -> None:
    # The ingress terminates TLS: the browser posts from https://apply..., intake sees plain http.
    browser = {"Host": "apply.agency.example", "Origin": "https://apply.agency.example"}
    forwarded = {**browser, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "apply.agency.example"}
    assert origin_allowed(request("10.0.0.7", forwarded), [], PROXIES)
    assert not origin_allowed(request("10.0.0.7", browser), [], PROXIES)  # the proxy did not say https
    # Only a trusted proxy is believed: anyone else could claim any origin.
    assert not origin_allowed(request("203.0.113.9", forwarded), [], PROXIES)
    spoofed = {**forwarded, "Origin": "https://evil.example", "X-Forwarded-Host": "evil.example"}
    assert not origin_allowed(request("203.0.113.9", spoofed), [], PROXIES)


@pytest.mark.parametrize(
    "body",
    [
        b'{"notes": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # past the json module's recursion limit
        b'{"notes": ' + b"[" * 8 + b"]" * 8 + b"}",  # readable, but deeper than any form
        b'{"notes": ' + b"9" * 5000 + b"}",  # more digits than Python converts to an int
    ],
    ids=["deeper-than-the-stack", "deeper-than-a-form", "huge-integer"],
)
def test_json_too_deep_or_with_huge_numbers_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_submission(body, "application/json")


def test_json_as_deep_as_the_limit_is_read() -> None:
    nested: object = "x"
    for _ in range(MAX_NESTING - 1):
        nested = [nested]
    assert parse_submission(json.dumps({"notes": nested}).encode(), "application/json") == {"notes": nested}


def test_form_names_deeper_than_the_limit_are_malformed() -> None:
    assert fold_form_fields([(".".join("a" * MAX_NESTING), "x")])  # MAX_NESTING levels: read
    with pytest.raises(MalformedBody):
        fold_form_fields([(".".join("a" * (MAX_NESTING + 1)), "x")])
