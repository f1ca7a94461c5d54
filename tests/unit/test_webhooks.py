"""Webhook signing (checked against the independent standardwebhooks package), verification,
answer classification, retry schedule and the private-address guard."""

from __future__ import annotations

import base64
import json
import os

import pytest
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as SWError

from asyncgw import webhooks

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
BODY = json.dumps({"id": "r1", "status": "completed"}).encode()


def test_signature_verifies_with_standardwebhooks() -> None:
    headers = webhooks.sign(SECRET, "msg_1", BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {"id": "r1", "status": "completed"}


def test_standardwebhooks_refuses_a_wrong_secret_or_tampered_body() -> None:
    headers = webhooks.sign(SECRET, "msg_1", BODY)
    other = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    with pytest.raises(SWError):
        Webhook(other).verify(BODY, headers)
    with pytest.raises(SWError):
        Webhook(SECRET).verify(BODY.replace(b"completed", b"failed"), headers)


def test_our_verify_accepts_what_standardwebhooks_signs() -> None:
    headers = {"webhook-id": "msg_2", "webhook-timestamp": "1700000000"}
    headers["webhook-signature"] = Webhook(SECRET).sign(
        "msg_2", __import__("datetime").datetime.fromtimestamp(1700000000), BODY.decode()
    )
    assert webhooks.verify(SECRET, headers, BODY, now=1700000010) == json.loads(BODY)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"webhook-id": "msg_other"}, "id is signed"),
        ({"webhook-timestamp": "1700000001"}, "timestamp is signed"),
        ({"webhook-signature": "v1,AAAA"}, "wrong signature"),
        ({"webhook-signature": "v2,whatever"}, "unknown version"),
    ],
)
def test_verify_refuses_changed_headers(change: dict[str, str], why: str) -> None:
    headers = {**webhooks.sign(SECRET, "msg_3", BODY, timestamp=1700000000), **change}
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(SECRET, headers, BODY, now=1700000000)


def test_verify_refuses_old_and_missing() -> None:
    headers = webhooks.sign(SECRET, "msg_4", BODY, timestamp=1700000000)
    with pytest.raises(webhooks.WebhookVerificationError, match="timestamp"):
        webhooks.verify(SECRET, headers, BODY, now=1700000000 + webhooks.TOLERANCE_S + 1)
    with pytest.raises(webhooks.WebhookVerificationError, match="missing"):
        webhooks.verify(SECRET, {}, BODY)
    assert webhooks.verify(SECRET, {k.upper(): v for k, v in headers.items()}, BODY, now=1700000000)


def test_several_signatures_one_matching() -> None:
    headers = webhooks.sign(SECRET, "msg_5", BODY, timestamp=1700000000)
    headers["webhook-signature"] = "v1,bm9wZQ== " + headers["webhook-signature"]
    assert webhooks.verify(SECRET, headers, BODY, now=1700000000) == json.loads(BODY)


def test_malformed_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="base64"):
        webhooks.sign("whsec_not base64!", "m", BODY)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (None, "retry"),
        (500, "retry"),
        (503, "retry"),
        (429, "retry"),
        (410, "gone"),
        (400, "failed"),
        (404, "failed"),
        (301, "failed"),
    ],
)
def test_response_outcome(status: int | None, outcome: str) -> None:
    assert webhooks.response_outcome(status) == outcome


@pytest.mark.parametrize(
    ("attempts", "expected"), [(1, 5.0), (2, 10.0), (3, 20.0), (8, 600.0), (100, 600.0)]
)
def test_retry_delay_doubles_to_a_cap(attempts: int, expected: float) -> None:
    assert webhooks.retry_delay_s(attempts, 5.0, 600.0, spread=0) == expected
    assert webhooks.retry_delay_s(attempts, 5.0, 600.0, spread=1) == pytest.approx(expected * 1.2)
    assert webhooks.retry_delay_s(attempts, 5.0, 600.0, spread=-1) == pytest.approx(expected * 0.8)


def test_default_schedule_retries_for_at_least_an_hour() -> None:
    from asyncgw.config import WebhookConfig

    config = WebhookConfig()
    assert config.retry_for_s >= 3600
    total, attempts = 0.0, 0
    while total <= 3600:
        attempts += 1
        total += webhooks.retry_delay_s(
            attempts, config.retry_backoff_s, config.max_retry_backoff_s, spread=1
        )
    assert total <= config.retry_for_s  # an hour of retries fits in the window


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00:ec2::254", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:93.184.216.34", True),
    ],
)
def test_address_allowed(address: str, allowed: bool) -> None:
    assert webhooks.address_allowed(address) is allowed


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "http://", "example.com/hook", "http://h:x/"],
)
def test_url_syntax_refused(url: str) -> None:
    with pytest.raises(webhooks.UnsafeWebhookUrl):
        webhooks.check_url_syntax(url)


async def test_check_url_refuses_private_literals_unless_allowed() -> None:
    for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest", "https://[::1]/"):
        with pytest.raises(webhooks.UnsafeWebhookUrl, match="private"):
            await webhooks.check_url(url, allow_private=False)
        await webhooks.check_url(url, allow_private=True)


@pytest.mark.parametrize("url", ["https://[::1", "http://exa mple.com/", "https://^na[E~f J<'k"])
def test_malformed_urls_are_refused_not_crashed(url: str) -> None:
    with pytest.raises(webhooks.UnsafeWebhookUrl):
        webhooks.check_url_syntax(url)
