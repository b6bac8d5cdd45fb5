"""Email: messages rendered from templates (livehub/mail/templates, jinja2) and sent by a `Mailer`.

Each kind of message has two templates: `<kind>.txt`, whose first line is `Subject: ...`, then a blank
line, then the text body; and `<kind>.html`, the HTML body (`{% extends "base.html" %}`). Both are rendered
with: site_name, public_url, user {id, name, email}, payload (the notification's), kind. Links are written
`{{ public_url }}/orders/{{ payload.order_id }}`.

The Mailer sends over SMTP (aiosmtplib) when LIVEHUB_SMTP_URL is set: smtp://user:pass@host:port (plain),
smtps://... (TLS from the start), smtp+starttls://... (upgraded with STARTTLS); query options `ca_file=PATH`
(trust this CA bundle) and `verify=false` (trust any certificate: development only). Unset, each message is
written to `<LIVEHUB_DATA_DIR>/mail/<time>-<id>.eml`, a file any mail program opens.
"""

import asyncio
import logging
import os
import ssl
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import jinja2

from livehub.settings import Settings

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    keep_trailing_newline=True,
)


class TemplateError(Exception):
    """A kind's templates are missing or malformed."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(kind: str, context: dict[str, Any]) -> Rendered:
    """The subject, text and HTML of a message of `kind` (templates `<kind>.txt` and `<kind>.html`)."""
    try:
        text = _env.get_template(f"{kind}.txt").render(kind=kind, **context)
        html = _env.get_template(f"{kind}.html").render(kind=kind, **context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"no template {exc.name} for message kind {kind}") from exc
    first, _, body = text.partition("\n")
    if not first.startswith("Subject:") or not body.startswith("\n"):
        raise TemplateError(f"{kind}.txt must start with 'Subject: ...' and a blank line")
    # One line of single spaces: user text in a subject (a shop's or product's name, a ticket's subject) may
    # hold line or paragraph separators (U+2028 and the like) that the email library refuses in a header.
    subject = " ".join(first[len("Subject:") :].split())
    if not subject:
        raise TemplateError(f"{kind}.txt has an empty subject")
    return Rendered(subject=subject, text=body[1:], html=html)


def message(
    rendered: Rendered, *, to: str, to_name: str | None, sender: str, message_id: str | None = None
) -> EmailMessage:
    """An email of both bodies (text first, HTML as the alternative)."""
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = sender
    msg["To"] = formataddr((to_name, to)) if to_name else to
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id or f"<{uuid.uuid4()}@livehub>"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool
    ca_file: str | None = None
    verify: bool = True

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.use_tls or self.start_tls):
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


_SCHEMES = {"smtp": (False, False, 25), "smtps": (True, False, 465), "smtp+starttls": (False, True, 587)}


def parse_smtp_url(url: str) -> SmtpTarget:
    """smtp://user:pass@host:port, smtps://..., smtp+starttls://... (ValueError if it is none of them)."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"LIVEHUB_SMTP_URL must start with smtp://, smtps:// or smtp+starttls://, not {parts.scheme}:")
    if not parts.hostname:
        raise ValueError("LIVEHUB_SMTP_URL names no host")
    use_tls, start_tls, default_port = _SCHEMES[parts.scheme]
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return SmtpTarget(
        hostname=parts.hostname,
        port=parts.port or default_port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=use_tls,
        start_tls=start_tls,
        ca_file=query.get("ca_file"),
        verify=query.get("verify", "true").lower() not in ("false", "0", "no"),
    )


class Mailer:
    """Sends EmailMessages over SMTP, or writes them as .eml files when no SMTP server is configured."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.smtp_url:
            parse_smtp_url(settings.smtp_url)  # a bad URL stops the start, not the first email

    # Read from the settings at each use (tests point a running node at their SMTP server).
    @property
    def sender(self) -> str:
        return self.settings.mail_from

    @property
    def target(self) -> SmtpTarget | None:
        return parse_smtp_url(self.settings.smtp_url) if self.settings.smtp_url else None

    @property
    def directory(self) -> Path:
        return Path(self.settings.data_dir) / "mail"

    def describe(self) -> str:
        """Where mail goes, for people (no password)."""
        if self.target is None:
            return f".eml files in {self.directory.resolve()}"
        t = self.target
        how = "TLS" if t.use_tls else "STARTTLS" if t.start_tls else "plain"
        return f"SMTP {t.hostname}:{t.port} ({how})"

    async def send(self, msg: EmailMessage) -> None:
        """Sends one message; raises if the server refused it or could not be reached (the job retries)."""
        if self.target is None:
            await asyncio.to_thread(self._write, msg)
            return
        t = self.target
        await aiosmtplib.send(
            msg,
            hostname=t.hostname,
            port=t.port,
            username=t.username,
            password=t.password,
            use_tls=t.use_tls,
            start_tls=t.start_tls,
            tls_context=t.tls_context(),
            timeout=self.settings.smtp_timeout_s,
        )

    def _write(self, msg: EmailMessage) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:12]}.eml"
        partial = path.with_suffix(".eml.part")
        partial.write_bytes(bytes(msg))
        os.replace(partial, path)  # whole or not at all: a reader never sees half a message
        return path
