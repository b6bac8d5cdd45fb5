"""Email: templates for every kind, a notification mailed to a real SMTP server (aiosmtpd), settings that
turn it off, SMTP URLs (smtp, smtps, starttls) and the .eml fallback."""

import asyncio
import ssl
import time
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from tls_helpers import make_certificate

from livehub import mail
from livehub.shop.messages import ACCOUNT_EMAILS, KINDS
from smtp_server import SmtpServer, body_html, body_text


def U(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def go_live(client, make, *, fans: int = 1, shop_name: str = "Glow Lab"):
    seller = await make.seller(shop_name=shop_name)
    accounts = [await make.user() for _ in range(fans)]
    for fan in accounts:
        res = await client.post(f"/api/sellers/{seller.seller['id']}/follow", headers=fan.headers)
        assert res.status == 200, await res.text()
    res = await client.post("/api/streams", json={"title": "Serum night", "products": []}, headers=seller.headers)
    stream = (await res.json())["stream"]
    res = await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)
    assert res.status == 200, await res.text()
    return stream, accounts


async def test_a_followed_shop_going_live_is_emailed(smtp_server, client, make, settings):
    stream, (fan,) = await go_live(client, make)
    msg = await smtp_server.wait_for(fan.user["email"], subject="is live now")
    assert msg["Subject"] == "Glow Lab is live now: Serum night"
    assert msg["From"] == settings.mail_from
    link = f"{settings.public_url}/watch/{stream['id']}"
    assert link in body_text(msg) and f'href="{link}"' in body_html(msg)
    assert settings.site_name in body_text(msg)


# -- templates ------------------------------------------------------------------------------------------


def test_every_kind_has_both_templates():
    for kind in (*KINDS, *ACCOUNT_EMAILS):
        text = mail.TEMPLATES / f"{kind}.txt"
        html = mail.TEMPLATES / f"{kind}.html"
        assert text.is_file() and html.is_file(), f"{kind} needs livehub/mail/templates/{kind}.txt and .html"
        first, blank = text.read_text().splitlines()[:2]
        assert first.startswith("Subject: ") and blank == "", f"{kind}.txt starts with 'Subject: ...' and a blank line"
        assert '{% extends "base.html" %}' in html.read_text(), f"{kind}.html extends base.html"


def test_render_fills_the_context_and_escapes_html_only():
    context = {
        "site_name": "Glow <Shop>",
        "public_url": "https://shop.example",
        "user": {"id": "u1", "name": "Ana", "email": "ana@example.test"},
        "payload": {"stream_id": "s1", "title": "Tips & <tricks>", "shop_name": "Glow Lab"},
    }
    out = mail.render("stream_live", context)
    assert out.subject == "Glow Lab is live now: Tips & <tricks>"
    assert "Tips & <tricks>" in out.text and "https://shop.example/watch/s1" in out.text
    assert "Tips &amp; &lt;tricks&gt;" in out.html and "Glow &lt;Shop&gt;" in out.html
    assert 'href="https://shop.example/watch/s1"' in out.html


def test_a_subject_of_user_text_is_one_header_line():
    """User text in a subject may hold line or paragraph separators a form's one-line check lets through
    (U+2028, U+0085); the email is still made, its subject one line (the email library refuses others)."""
    context = {
        "site_name": "LiveHub",
        "public_url": "https://shop.example",
        "user": {"id": "u1", "name": "Ana", "email": "ana@example.test"},
        "payload": {"stream_id": "s1", "title": "Tips\u2028and\x85tricks", "shop_name": "Glow\u2029Lab"},
    }
    out = mail.render("stream_live", context)
    assert out.subject == "Glow Lab is live now: Tips and tricks"
    msg = mail.message(out, to="ana@example.test", to_name="Ana", sender="LiveHub <noreply@localhost>")
    assert msg["Subject"] == "Glow Lab is live now: Tips and tricks"


def test_a_kind_without_templates_fails_loudly():
    try:
        mail.render("no_such_kind", {})
    except mail.TemplateError as exc:
        assert "no_such_kind" in str(exc)
    else:
        raise AssertionError("rendered a kind that has no templates")


# -- SMTP URLs --------------------------------------------------------------------------------------------


def test_smtp_urls_parse():
    plain = mail.parse_smtp_url("smtp://mail.example:2525")
    assert (plain.hostname, plain.port, plain.use_tls, plain.start_tls, plain.username) == (
        "mail.example",
        2525,
        False,
        False,
        None,
    )
    tls = mail.parse_smtp_url("smtps://shop%40example:p%3Ass@mail.example")
    assert (tls.port, tls.use_tls, tls.start_tls, tls.username, tls.password) == (
        465,
        True,
        False,
        "shop@example",
        "p:ss",
    )
    upgraded = mail.parse_smtp_url("smtp+starttls://u:p@mail.example?ca_file=/etc/ca.pem")
    assert (upgraded.port, upgraded.use_tls, upgraded.start_tls, upgraded.ca_file, upgraded.verify) == (
        587,
        False,
        True,
        "/etc/ca.pem",
        True,
    )
    assert mail.parse_smtp_url("smtps://mail.example?verify=false").verify is False
    assert mail.parse_smtp_url("smtp://mail.example").port == 25
    for bad in ("http://mail.example", "smtp://", "mail.example:25"):
        try:
            mail.parse_smtp_url(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_a_bad_smtp_url_stops_the_node_at_start(settings):
    try:
        mail.Mailer(settings.model_copy(update={"smtp_url": "imap://mail.example"}))
    except ValueError as exc:
        assert "smtp://" in str(exc)
    else:
        raise AssertionError("a Mailer took an imap:// URL")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 followed by its CA's (tests/tls_helpers.py), and its key: the chain the
    test's server sends, which is also the CA bundle a test's Mailer trusts."""
    made = make_certificate(tmp_path_factory.mktemp("tls"))
    return made.cert, made.key


def server_tls(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def shop_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"shop", b"s3cr:et")
    return AuthResult(success=ok)


def hello(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = "hello", "shop@example.test", to
    msg.set_content("hello")
    return msg


async def test_smtps_sends_over_tls_with_a_trusted_certificate(certificate, settings):
    server = SmtpServer(ssl_context=server_tls(certificate)).start()
    try:
        url = f"smtps://{server.host}:{server.port}?ca_file={certificate[0]}"
        await mail.Mailer(settings.model_copy(update={"smtp_url": url})).send(hello("tls@example.test"))
        assert (await server.wait_for("tls@example.test"))["Subject"] == "hello"
        # Without trusting that certificate the send is refused (and the job would retry).
        untrusted = mail.Mailer(settings.model_copy(update={"smtp_url": f"smtps://{server.host}:{server.port}"}))
        with pytest.raises(aiosmtplib.SMTPException):
            await untrusted.send(hello("tls@example.test"))
        assert len(server.messages("tls@example.test")) == 1
    finally:
        server.stop()


# aiosmtpd itself still sets the deprecated Session.login_data on a successful login (in its thread).
@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning")
async def test_starttls_upgrades_and_logs_in(certificate, settings):
    server = SmtpServer(
        tls_context=server_tls(certificate),
        require_starttls=True,
        authenticator=shop_login,
        auth_require_tls=True,
        auth_required=True,  # no mail without the login: delivery proves the credentials were sent and right
    ).start()
    try:
        base = f"{server.host}:{server.port}?ca_file={certificate[0]}"
        mailer = mail.Mailer(settings.model_copy(update={"smtp_url": f"smtp+starttls://shop:s3cr%3Aet@{base}"}))
        await mailer.send(hello("starttls@example.test"))
        assert (await server.wait_for("starttls@example.test"))["Subject"] == "hello"
    finally:
        server.stop()


# -- no SMTP server: .eml files --------------------------------------------------------------------------


async def test_without_smtp_url_each_email_is_an_eml_file(client, settings, make, tmp_path):
    # The node reads where mail goes when it sends: no SMTP URL, and a data directory of this test's own.
    settings.smtp_url, settings.data_dir = None, tmp_path
    stream, (fan,) = await go_live(client, make)
    deadline = time.monotonic() + 20
    while not (found := [p for p in (tmp_path / "mail").glob("*.eml") if "is live now" in p.read_text()]):
        assert time.monotonic() < deadline, "no .eml file was written"
        await asyncio.sleep(0.05)
    (path,) = found
    assert not list((tmp_path / "mail").glob("*.part"))
    msg = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == fan.user["email"]
    assert msg["Subject"] == "Glow Lab is live now: Serum night"
    assert f"/watch/{stream['id']}" in body_text(msg)


# -- settings ---------------------------------------------------------------------------------------------


async def test_notification_settings_api(client, make):
    me = await make.user()
    res = await client.get("/api/me/notification-settings", headers=me.headers)
    assert res.status == 200, await res.text()
    assert (await res.json())["kinds"] == [{"kind": k, "email": True} for k in KINDS]

    body = {"kinds": [{"kind": "stream_live", "email": False}, {"kind": "order_shipped", "email": False}]}
    res = await client.put("/api/me/notification-settings", json=body, headers=me.headers)
    assert res.status == 200, await res.text()
    off = {k["kind"] for k in (await res.json())["kinds"] if not k["email"]}
    assert off == {"stream_live", "order_shipped"}
    # Named twice: the last one counts; others are unchanged.
    body = {"kinds": [{"kind": "stream_live", "email": False}, {"kind": "stream_live", "email": True}]}
    res = await client.put("/api/me/notification-settings", json=body, headers=me.headers)
    off = {k["kind"] for k in (await res.json())["kinds"] if not k["email"]}
    assert off == {"order_shipped"}

    res = await client.put(
        "/api/me/notification-settings", json={"kinds": [{"kind": "weather", "email": False}]}, headers=me.headers
    )
    assert res.status == 422
    assert (await res.json())["error"]["details"]["kinds"] == ["weather"]
    assert (await client.get("/api/me/notification-settings")).status == 401


async def test_email_turned_off_still_stores_and_pushes(smtp_server, client, make, db):
    seller = await make.seller(shop_name="Glow Lab")
    quiet, loud = await make.user(), await make.user()
    res = await client.put(
        "/api/me/notification-settings",
        json={"kinds": [{"kind": "stream_live", "email": False}]},
        headers=quiet.headers,
    )
    assert res.status == 200
    for fan in (quiet, loud):
        await client.post(f"/api/sellers/{seller.seller['id']}/follow", headers=fan.headers)
    inbox = await client.ws_connect("/ws/me", headers=quiet.headers)
    assert (await inbox.receive_json(timeout=5))["type"] == "welcome"
    res = await client.post("/api/streams", json={"title": "Serum night", "products": []}, headers=seller.headers)
    stream = (await res.json())["stream"]
    assert (await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)).status == 200

    pushed = await inbox.receive_json(timeout=15)
    assert pushed["type"] == "notification" and pushed["notification"]["kind"] == "stream_live"
    await smtp_server.wait_for(loud.user["email"], subject="is live now")
    deadline = time.monotonic() + 20
    while await db.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'deliver_notification'"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert smtp_server.messages(quiet.user["email"], subject="is live now") == []
    row = await db.fetchrow("SELECT emailed_at FROM notifications WHERE user_id = $1", U(quiet.id))
    assert row is not None and row["emailed_at"] is None
    await inbox.close()
