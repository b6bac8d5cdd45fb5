"""Email: templates for every kind, a notification mailed to a real SMTP server (aiosmtpd), settings that
turn it off, SMTP URLs (smtp, smtps, starttls) and the .eml fallback."""

import uuid

from smtp_server import body_html, body_text

from livehub import mail
from livehub.shop.messages import ACCOUNT_EMAILS, KINDS


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
