"""Typed application state keys, declared in one place."""

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from livehub.api.cache import ListingCache
from livehub.auth import PasswordHasher
from livehub.live.hub import Hub
from livehub.sealing import SecretBox
from livehub.settings import Settings
from livehub.shop.payments import PaymentProvider
from livehub.shop.payouts import PayoutProvider
from livehub.signin_limits import LoginLimiter
from livehub.tasks import Supervisor
from livehub.twofactor import TwoFactor

if TYPE_CHECKING:
    from livehub.dbwatch import EmbeddedWatch
    from livehub.jobs import Jobs
    from livehub.mail import Mailer
    from livehub.media.sessions import MediaNode
    from livehub.shop.card_payments import StripeCards

SETTINGS = web.AppKey("settings", Settings)
TASKS = web.AppKey("tasks", Supervisor)
POOL = web.AppKey("pool", asyncpg.Pool)
HASHER = web.AppKey("hasher", PasswordHasher)
LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)
TWO_FACTOR = web.AppKey("two_factor", TwoFactor)
OPENAPI = web.AppKey("openapi", dict)
PAYMENTS = web.AppKey("payments", PaymentProvider)
# Who sends approved payouts (LIVEHUB_PAYOUTS), and the box payout destinations are sealed in.
PAYOUTS = web.AppKey("payouts", PayoutProvider)
PAYOUT_BOX = web.AppKey("payout_box", SecretBox)
HUB = web.AppKey("hub", Hub)
LISTING_CACHE = web.AppKey("listing_cache", ListingCache)
# The media node is imported with aiortc only when the app starts with the aiortc backend.
MEDIA: web.AppKey["MediaNode"] = web.AppKey("media")
# The node's job queue worker and scheduler (livehub/jobs.py), and its mailer (livehub/mail).
JOBS: web.AppKey["Jobs"] = web.AppKey("jobs")
MAILER: web.AppKey["Mailer"] = web.AppKey("mailer")
# The embedded PostgreSQL's watcher, on a node run.py started with one.
EMBEDDED_WATCH: web.AppKey["EmbeddedWatch"] = web.AppKey("embedded_watch")
# Card payments through Stripe (livehub/shop/card_payments.py) when LIVEHUB_PAYMENTS=stripe, else None.
CARDS: web.AppKey["StripeCards | None"] = web.AppKey("cards")
