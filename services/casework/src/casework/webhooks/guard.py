"""The send-time guard against server-side request forgery (outside local and test runs): a request goes out only
to a host whose every address is global, and the connection is made to the address that was checked, so a DNS
answer that changes between the check and the connection (rebinding) cannot send it to an internal one. TLS still
verifies the certificate for the URL's host name (httpcore does the TLS on top of this connection)."""

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

Resolve = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, as ``getaddrinfo`` sees it)."""
    answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in answers]


# RFC 6052's well-known NAT64 prefix: an IPv4 address in the last 32 bits, translated to IPv4 on the way; Python
# counts it as global, whatever the IPv4 address is.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
# Refused whole: the local-use NAT64 prefix (RFC 8215; where its IPv4 address sits depends on the operator's prefix
# length), IPv4-compatible addresses (deprecated) and SIIT's IPv4-translated ones, which Python also calls global.
TRANSLATED_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
)


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global and not multicast, and so is any IPv4 address it carries (IPv4-mapped, 6to4, Teredo, NAT64): a
    ``64:ff9b::a00:1`` reaches ``10.0.0.1`` on a network that translates IPv6 to IPv4."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address) and any(address in prefix for prefix in TRANSLATED_PREFIXES):
        return False
    embedded = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    return embedded is None or (embedded.is_global and not embedded.is_multicast)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address (the server's is public by design)
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refused_address(addresses: Iterable[str]) -> str | None:
    """The first address that is not public (loopback, private, link-local, shared, reserved, multicast,
    unspecified, an IPv6 address carrying such an IPv4 one, or not an address at all), or None if all are."""
    for address in addresses:
        try:
            parsed = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return address
        if not is_public(parsed):
            return address
    return None


async def public_address(host: str, port: int, resolver: Resolve = resolve) -> str:
    """The address to connect to for ``host``: one of its addresses, all of them global; else ``ConnectError``."""
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise httpcore.ConnectError(f"cannot resolve {host}: no address")
    refused = refused_address(addresses)
    if refused is not None:
        raise httpcore.ConnectError(f"refused: {host} resolves to {refused}, not a public address")
    return addresses[0]


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to the checked global address of each host."""

    def __init__(self, resolver: Resolve = resolve, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await public_address(host, port, self._resolver)
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("refused: no Unix sockets for webhooks")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def public_only_transport(resolver: Resolve = resolve) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go through ``PublicOnlyBackend`` (no proxy from the environment)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend: its pool is replaced by the same one built with the guarded backend.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=PublicOnlyBackend(resolver),
    )
    return transport
