"""A real Stripe API for tests: localstripe in a subprocess on a free loopback port.

The `stripe_server` fixture starts one per test session (each test makes intents of its own) and
`stripe_settings` points the test's settings at it: LIVEHUB_PAYMENTS=stripe, test keys, a webhook secret
and LIVEHUB_STRIPE_API_BASE. localstripe keeps payment intents, charges and refunds and sends signed
webhooks itself (payment_intent.succeeded, payment_intent.payment_failed) to the endpoint registered with
`register_webhook`; it has no disputes and sends no charge.refunded, so tests sign those events themselves
with `signed_event` (Stripe's scheme: `t=<time>,v1=<HMAC-SHA256 of "<time>.<body>">`).

What a browser does with Stripe.js (attach a card, confirm) the tests do with `pay`.
"""

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from smtp_server import free_port

SECRET_KEY = "sk_test_livehub"
PUBLISHABLE_KEY = "pk_test_livehub"
WEBHOOK_SECRET = "whsec_livehub_test"


class StripeServer:
    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> "StripeServer":
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "localstripe", "--port", str(self.port), "--from-scratch"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.log.parent,
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"localstripe exited; see {self.log}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "localstripe did not answer in 30 s"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    async def call(self, method: str, path: str, data: dict | None = None) -> dict:
        """Stripe's API as a client (Stripe.js, the dashboard) calls it: form-encoded, the secret key."""
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, data=data, headers=headers) as res,
        ):
            body = await res.json()
            assert res.status == 200, body
            return body

    async def register_webhook(self, url: str, *, secret: str = WEBHOOK_SECRET, events: list[str] | None = None):
        """localstripe sends its events to `url` from now on (one endpoint: a later call replaces it)."""
        data = {"url": url, "secret": secret}
        if events is not None:
            data["events"] = events
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/_config/webhooks/livehub", json=data) as res,
        ):
            assert res.status == 200, await res.text()

    async def pay(self, intent_id: str, payment_method: str = "pm_card_visa") -> dict:
        """Attach a test card to the intent and confirm it, as Stripe.js's confirmPayment would."""
        await self.call("POST", f"/v1/payment_intents/{intent_id}", {"payment_method": payment_method})
        return await self.call("POST", f"/v1/payment_intents/{intent_id}/confirm")

    async def refund(self, intent_id: str, amount_cents: int | None = None) -> dict:
        data = {"payment_intent": intent_id}
        if amount_cents is not None:
            data["amount"] = str(amount_cents)
        return await self.call("POST", "/v1/refunds", data)


def signed_event(event: dict, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, dict]:
    """An event's body and headers signed as Stripe signs them."""
    body = json.dumps(event).encode()
    at = int(time.time()) if at is None else at
    signature = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={at},v1={signature}", "Content-Type": "application/json"}


def event_of(kind: str, obj: dict, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{os.urandom(8).hex()}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "api_version": "2024-06-20",
    }


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory):
    server = StripeServer(free_port(), tmp_path_factory.mktemp("localstripe") / "localstripe.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stripe_settings(settings, stripe_server):
    """The test's settings, paying top-ups by card through the session's localstripe."""
    settings.payment_provider = "stripe"
    settings.stripe_secret_key = SECRET_KEY
    settings.stripe_publishable_key = PUBLISHABLE_KEY
    settings.stripe_webhook_secret = WEBHOOK_SECRET
    settings.stripe_api_base = stripe_server.url
    return settings
