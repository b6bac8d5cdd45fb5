"""Notifications and account emails: the kinds, who wants which emailed, and delivering one.

A notification is written by the storage function that causes it (`notify_user()` in
storage/functions/messages.sql), in the same transaction, with its delivery queued as job
`deliver_notification` (livehub/jobs.py runs it): pushed to the user's sockets (/ws/me and open stream
sockets, on every node), and emailed unless the user turned email off for its kind. docs/MESSAGES.md.
"""

import logging
from datetime import datetime
from typing import Any
from uuid import UUID

import pydantic

from livehub import mail
from livehub.broker.base import BrokerUnavailable
from livehub.errors import ValidationFailed
from storage.db import DB

log = logging.getLogger(__name__)
_TIME = pydantic.TypeAdapter(datetime)

# Every kind of notification. Each has templates livehub/mail/templates/<kind>.txt and .html
# (tests/test_mail.py checks), and a row in docs/MESSAGES.md's kinds table.
KINDS: tuple[str, ...] = (
    "order_placed",
    "order_shipped",
    "order_delivered",
    "order_refunded",
    "return_decided",
    "payout_decided",
    "seller_application_decided",
    "review_reply",
    "ticket_opened",
    "ticket_reply",
    "low_stock",
    "show_scheduled",
    "stream_live",
    "show_reminder",
    "earnings_available",
    "auction_won",
    "host_invited",
    "host_answered",
    "giveaway_won",
    "backup_failed",
    "card_order_failed",
    "payout_destination_changed",
)

# Account emails: not notifications (not stored, no settings, always sent), queued as job `account_email`
# with payload {user_id, kind, data}; templates the same way, `data` in their context.
ACCOUNT_EMAILS: tuple[str, ...] = ("verify_email", "password_reset")


async def notification_settings(db: DB, user_id: UUID) -> list[dict[str, Any]]:
    """Email on or off for every kind (on unless turned off)."""
    off = {
        r["kind"]: r["email"]
        for r in await db.fetch("SELECT kind, email FROM notification_settings WHERE user_id = $1", user_id)
    }
    return [{"kind": kind, "email": off.get(kind, True)} for kind in KINDS]


async def set_notification_settings(db: DB, user_id: UUID, kinds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sets email on or off for the kinds named (others unchanged); unknown kinds are refused."""
    unknown = sorted({k["kind"] for k in kinds} - set(KINDS))
    if unknown:
        raise ValidationFailed("unknown notification kind", {"kinds": unknown, "known": list(KINDS)})
    chosen = {k["kind"]: bool(k["email"]) for k in kinds}  # a kind named twice: the last one counts
    if chosen:
        await db.execute(
            """INSERT INTO notification_settings (user_id, kind, email)
               SELECT $1, k, e FROM unnest($2::text[], $3::boolean[]) AS t(k, e)
               ON CONFLICT (user_id, kind) DO UPDATE SET email = EXCLUDED.email""",
            user_id,
            list(chosen),
            list(chosen.values()),
        )
    return await notification_settings(db, user_id)


def frame(row: dict[str, Any]) -> dict[str, Any]:
    """The socket frame of a notification."""
    return {
        "type": "notification",
        "notification": {
            "id": str(row["id"]),
            "kind": row["kind"],
            "payload": row["payload"],
            # The same spelling as the REST API's (pydantic's).
            "created_at": _TIME.dump_python(row["created_at"], mode="json"),
            "read_at": _TIME.dump_python(row["read_at"], mode="json") if row["read_at"] else None,
        },
    }


def context(settings, user: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """What a mail template is rendered with."""
    return {
        "site_name": settings.site_name,
        "public_url": settings.public_url.rstrip("/"),
        "user": user,
        "payload": payload,
    }


def message_id(what: str, ident: Any, settings) -> str:
    """A Message-ID of its own per email (a retry that sends again repeats it, so mail programs can tell)."""
    from urllib.parse import urlsplit

    host = urlsplit(settings.public_url).hostname or "livehub"
    return f"<{what}.{ident}@{host}>"


async def deliver_notification(
    pool, settings, hub, mailer: mail.Mailer, notification_id: UUID, *, push: bool = True
) -> str:
    """Push a stored notification to its user's sockets, and email it unless turned off or sent already.
    Returns what was done ("emailed", "not emailed: ...", "gone"). Raises if the email could not be sent
    (the job is tried again, without pushing again)."""
    row = await pool.fetchrow(
        """SELECT n.id, n.user_id, n.kind, n.payload, n.created_at, n.read_at, n.emailed_at,
                  u.email, u.display_name, u.deactivated_at,
                  coalesce((SELECT s.email FROM notification_settings s
                             WHERE s.user_id = n.user_id AND s.kind = n.kind), true) AS wants_email
             FROM notifications n JOIN users u ON u.id = n.user_id
            WHERE n.id = $1""",
        notification_id,
    )
    if row is None:
        return "gone"  # the user was deleted since
    if push and hub is not None:
        try:
            await hub.notify([row["user_id"]], frame(dict(row)))
        except BrokerUnavailable:
            log.warning("notification %s not pushed: the broker is away (it is stored)", notification_id)
    if row["emailed_at"] is not None:
        return "not emailed: sent already"
    if not row["wants_email"]:
        return "not emailed: turned off"
    if row["deactivated_at"] is not None:
        return "not emailed: account deactivated"
    user = {"id": str(row["user_id"]), "name": row["display_name"], "email": row["email"]}
    rendered = mail.render(row["kind"], context(settings, user, row["payload"]))
    msg = mail.message(
        rendered,
        to=row["email"],
        to_name=row["display_name"],
        sender=mailer.sender,
        message_id=message_id("notification", row["id"], settings),
    )
    await mailer.send(msg)
    # Sent: recorded so that a retry never sends it again. A crash between the send and this update is the
    # only way to a second copy (docs/MESSAGES.md, "At most one email").
    await pool.execute("UPDATE notifications SET emailed_at = now() WHERE id = $1 AND emailed_at IS NULL", row["id"])
    return "emailed"


async def send_account_email(pool, settings, mailer: mail.Mailer, user_id: UUID, kind: str, data: dict) -> str:
    """An account email (verify_email, password_reset) to a user; always sent (no settings)."""
    if kind not in ACCOUNT_EMAILS:
        raise ValueError(f"unknown account email {kind}")
    row = await pool.fetchrow("SELECT id, email, display_name FROM users WHERE id = $1", user_id)
    if row is None:
        return "gone"
    user = {"id": str(row["id"]), "name": row["display_name"], "email": row["email"]}
    # The link's token is made now, as the email goes (livehub/shop/account_emails.py): only its hash is
    # stored, committed before sending; the raw token lives in this call and the email only.
    from livehub.shop import account_emails

    async with pool.acquire() as conn, conn.transaction():
        token_data = await account_emails.prepare(conn, settings, user_id, kind)
    if token_data is None:
        return "not needed"  # the account is gone, deactivated, or verified meanwhile
    data = {**data, **token_data}
    ctx = context(settings, user, data)
    ctx["data"] = data
    rendered = mail.render(kind, ctx)
    await mailer.send(mail.message(rendered, to=row["email"], to_name=row["display_name"], sender=mailer.sender))
    return "emailed"
