"""A real SMTP server for tests: aiosmtpd on a free loopback port, collecting what it receives.

The `smtp_server` fixture (imported by conftest.py) starts one and points the test's settings at it
(LIVEHUB_SMTP_URL), so a node started with those settings mails it. Read what arrived with
`await smtp_server.wait_for("buyer@example.test", subject="shipped")` (a bounded poll; parsed messages). `stop()` and
`start()` take the server down and bring it back on the same port (an SMTP outage).
"""

import asyncio
import socket
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Collect:
    def __init__(self, server: "SmtpServer") -> None:
        self.server = server

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        with self.server.lock:
            for rcpt in envelope.rcpt_tos:
                self.server.received.append((rcpt.lower(), msg))
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int | None = None, **controller_options) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.received: list[tuple[str, EmailMessage]] = []
        self.lock = threading.Lock()
        self._options = controller_options
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> "SmtpServer":
        self._controller = Controller(_Collect(self), hostname=self.host, port=self.port, **self._options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self, to: str | None = None, *, subject: str | None = None) -> list[EmailMessage]:
        """What arrived (for `to` only, and whose Subject contains `subject`, if given), oldest first."""
        with self.lock:
            return [
                m
                for rcpt, m in self.received
                if (to is None or rcpt == to.lower()) and (subject is None or subject in str(m["Subject"]))
            ]

    async def wait_for(
        self, to: str, *, subject: str | None = None, count: int = 1, timeout_s: float = 20.0
    ) -> EmailMessage:
        """The `count`-th message to `to` (whose Subject contains `subject`, if given), waiting up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        while len(found := self.messages(to, subject=subject)) < count:
            assert time.monotonic() < deadline, f"no message {count} to {to} in {timeout_s} s; got {self.summary()}"
            await asyncio.sleep(0.05)
        return found[count - 1]

    def summary(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(rcpt, str(m["Subject"])) for rcpt, m in self.received]


def body_text(msg: EmailMessage) -> str:
    """The text part of a message."""
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def body_html(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    return part.get_content() if part is not None else ""


@pytest.fixture
def smtp_server(settings):
    """A running SMTP server; `settings` (the test's, which the app fixtures use) mail it."""
    server = SmtpServer().start()
    settings.smtp_url = server.url
    try:
        yield server
    finally:
        server.stop()
