"""The client's address, for per-address limits (sign-in throttling, sign-up rate).

``X-Forwarded-For`` is believed only from the proxies an operator lists in
``DEEPLENS_TRUSTED_PROXIES``: the address is the right-most one in the chain that is not a
trusted proxy. Anyone else's header is ignored, so a client cannot choose its own address.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=32)
def parse_proxies(spec: str) -> tuple[Network, ...]:
    return tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()
    )


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def resolve(
    peer: str | None, forwarded_for: str | None, proxies: tuple[Network, ...]
) -> str | None:
    if peer is None or not proxies or not _trusted(peer, proxies):
        return peer
    chain = [a.strip() for a in (forwarded_for or "").split(",") if a.strip()]
    for address in reversed(chain):
        if not _trusted(address, proxies):
            try:
                return str(ipaddress.ip_address(address))
            except ValueError:
                return peer  # a garbled header: fall back to the proxy itself
    return chain[0] if chain else peer


def client_address(request: Request, trusted_proxies: str) -> str | None:
    peer = request.client.host if request.client else None
    return resolve(peer, request.headers.get("x-forwarded-for"), parse_proxies(trusted_proxies))
