"""Webhook signing and verification per the Standard Webhooks specification, and the guard that
keeps webhook URLs away from private networks.

A receiver verifies a call in a few lines::

    from asyncgw.webhooks import verify, WebhookVerificationError

    try:
        record = verify(secret, request.headers, body)   # the parsed JSON record
    except WebhookVerificationError:
        return 400
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import math
import random
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

#: How far a signature's timestamp may be from now before ``verify`` refuses it.
TOLERANCE_S = 5 * 60
_SECRET_PREFIX = "whsec_"


class WebhookVerificationError(Exception):
    """The call is not signed with the secret, or too old, or malformed."""


class UnsafeWebhookUrl(ValueError):
    """The URL is not http(s) or points at a private, loopback, link-local or metadata address."""


class UnresolvedWebhookHost(UnsafeWebhookUrl):
    """The URL's host name does not resolve (now)."""


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(_SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise ValueError("a webhook secret must be 'whsec_' followed by base64") from None


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` with the secret's key."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(secret: str, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one call."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature(secret, message_id, ts, body),
    }


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> Any:
    """Check a call's signature and age; return its parsed JSON body. ``headers`` may be any
    case-insensitive mapping (or a plain dict with lower-case names)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"]
    except (KeyError, ValueError):
        raise WebhookVerificationError("missing or malformed webhook headers") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > TOLERANCE_S:
        raise WebhookVerificationError("timestamp too far from now")
    expected = signature(secret, message_id, timestamp, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            try:
                return json.loads(body)
            except ValueError:
                raise WebhookVerificationError("body is not JSON") from None
    raise WebhookVerificationError("no matching signature")


def address_allowed(address: str) -> bool:
    """Whether a resolved address is a public one: globally routable (so not loopback, private,
    shared, link-local — where cloud metadata lives — reserved or unspecified) and not multicast.
    An IPv4-mapped IPv6 address is judged by its IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url_syntax(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL; ``UnsafeWebhookUrl`` otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeWebhookUrl(f"webhook URL {url!r} is malformed: {exc}") from None
    if parts.scheme not in {"http", "https"} or not host or any(c.isspace() for c in url):
        raise UnsafeWebhookUrl(f"webhook URL must be http(s)://host/..., got {url!r}")
    return host, port


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL that is not http(s) or resolves to a non-public address (unless
    ``allow_private``). A name that does not resolve is refused too."""
    host, port = check_url_syntax(url)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnresolvedWebhookHost(f"webhook host {host!r} does not resolve: {exc}") from None
    for *_, sockaddr in infos:
        if not address_allowed(str(sockaddr[0])):
            raise UnsafeWebhookUrl(
                f"webhook host {host!r} resolves to {sockaddr[0]}, a private address; "
                "set ASYNCGW_WEBHOOK_ALLOW_PRIVATE=1 to allow it"
            )


def response_outcome(status: int | None) -> str:
    """What a delivery attempt's answer means (SPEC §8): ``delivered`` (2xx); ``retry``
    (no answer — ``None`` — 5xx or 429); ``gone`` (410: stop for good); ``failed`` (any other
    answer, including redirects, which are not followed)."""
    if status is None or status >= 500 or status == 429:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    return "failed"


def retry_delay_s(
    attempts: int, backoff_s: float, max_backoff_s: float, spread: float | None = None
) -> float:
    """Seconds before the next delivery attempt after ``attempts`` failed ones: ``backoff_s``
    doubling per attempt up to ``max_backoff_s``, times a jitter factor in ``[0.8, 1.2]``
    (``spread`` in ``[-1, 1]`` picks it; random when ``None``)."""
    if spread is None:
        spread = random.uniform(-1.0, 1.0)
    base = min(max_backoff_s, math.ldexp(backoff_s, max(0, min(attempts, 40) - 1)))
    return max(0.0, base * (1 + 0.2 * spread))
