"""Outbound HTTP to URLs that an administrator typed in (webhooks): https only, public addresses
only, checked on the very address the socket connects to, and no redirects.

The server runs next to things an outsider must not reach through it (the cloud metadata service
at 169.254.169.254, databases on 127.0.0.1, the private network). A URL checked when it is saved
is not enough, since its name can resolve elsewhere later (DNS rebinding). So the connection
resolves the name once, refuses it if any address is not public, and connects to the checked
address itself; TLS still verifies the certificate for, and sends SNI and Host with, the name.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.util import Timeout, connection, parse_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(Exception):
    """The URL may not be requested: its scheme, or an address its host resolves to. The message
    is for the administrator who typed the URL; it names no port state."""


class DeliveryFailed(Exception):
    """No answer came (refused, timed out, TLS failed, ...). Deliberately one class with one
    message: telling these apart would turn the webhook into a port scanner."""

    def __init__(self) -> None:
        super().__init__("delivery failed")


@dataclass(frozen=True)
class Answer:
    status: int


def address_public(address: IPAddress) -> bool:
    """True for an address on the public internet, or in a network the operator allowed
    (VERIDICT_WEBHOOK_ALLOW_NETWORKS, for receivers on premises)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    allowed = [ipaddress.ip_network(net, strict=False) for net in settings.WEBHOOK_ALLOW_NETWORKS]
    if any(address in network for network in allowed):
        return True
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        # Tunnels that carry an IPv4 address inside (6to4, Teredo) reach that address.
        if address.sixtofour is not None:
            candidates.append(address.sixtofour)
        if address.teredo is not None:
            candidates.extend(address.teredo)
    return all(
        candidate.is_global
        and not (
            candidate.is_multicast
            or candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_reserved
            or candidate.is_unspecified
        )
        for candidate in candidates
    )


def addresses_resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to, all of them public, or DestinationRefused."""
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise DestinationRefused(f"the host {host!r} does not resolve") from None
    # An IPv6 link-local answer carries a zone ("fe80::1%eth0"): the address is before it.
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DestinationRefused(f"the host {host!r} does not resolve")
    for address in addresses:
        if not address_public(ipaddress.ip_address(address.partition("%")[0])):
            # All or nothing: a name with one private address is refused, not tried elsewhere.
            raise DestinationRefused(
                f"the host {host!r} resolves to {address}, which is not a public address "
                "(loopback, private, link-local, multicast or reserved)"
            )
    return addresses


def url_check(url: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and request target of an allowed URL, or DestinationRefused. Resolves
    nothing: that happens at each connection."""
    try:
        parts = parse_url(url)
    except ValueError:
        raise DestinationRefused("not a URL") from None
    scheme, host = (parts.scheme or "").lower(), (parts.host or "").lower().strip("[]")
    if not host:
        raise DestinationRefused("the URL has no host")
    if scheme == "http":
        if host not in [name.lower() for name in settings.WEBHOOK_ALLOW_HTTP_HOSTS]:
            raise DestinationRefused(
                "only https URLs are allowed (http only for the hosts in "
                "VERIDICT_WEBHOOK_ALLOW_HTTP_HOSTS)"
            )
    elif scheme != "https":
        raise DestinationRefused("only https URLs are allowed")
    if parts.auth:
        raise DestinationRefused("the URL may not hold a user name or password")
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, host, port, parts.request_uri


def destination_check(url: str) -> None:
    """What saving a URL checks: it is allowed and resolves to public addresses only now (each
    connection checks again)."""
    _, host, port, _ = url_check(url)
    addresses_resolve(host, port)


class _CheckedConnect:
    """Replaces urllib3's connect step: resolve once, check every address, connect to a checked
    one. urllib3 wraps the returned socket in TLS for the URL's host name, as usual."""

    _dns_host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        last: OSError | None = None
        for address in addresses_resolve(self._dns_host, self.port):
            try:
                return connection.create_connection(
                    (address, self.port),
                    timeout=self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                last = exc
        raise NewConnectionError(self, "no address answered") from last  # type: ignore[arg-type]


class _CheckedHTTPConnection(_CheckedConnect, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_CheckedConnect, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


def outbound_post(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POSTs body to url once: DestinationRefused for a URL or address not allowed,
    DeliveryFailed when no answer came, else the answer's status (a redirect is an answer like
    any other, never followed). The answer's body is not read."""
    scheme, host, port, target = url_check(url)
    pool_class = _CheckedHTTPSPool if scheme == "https" else _CheckedHTTPPool
    # No proxy from the environment and no retries: exactly one connection to a checked address.
    pool = pool_class(host, port, timeout=Timeout(total=timeout), retries=False, maxsize=1)
    try:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
        )
        response.release_conn()
        return Answer(status=response.status)
    except (HTTPError, OSError, ValueError) as exc:
        # DestinationRefused (raised in the connect step) is none of these: urllib3 lets it by.
        raise DeliveryFailed() from exc
    finally:
        pool.close()
