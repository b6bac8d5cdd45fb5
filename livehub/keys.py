"""Typed application state keys, declared in one place."""

import asyncpg
from aiohttp import web

from livehub.api.cache import ListingCache
from livehub.auth import LoginLimiter, PasswordHasher
from livehub.live.hub import Hub
from livehub.media.sessions import MediaNode
from livehub.settings import Settings
from livehub.shop.payments import PaymentProvider

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
HASHER = web.AppKey("hasher", PasswordHasher)
LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)
OPENAPI = web.AppKey("openapi", dict)
PAYMENTS = web.AppKey("payments", PaymentProvider)
HUB = web.AppKey("hub", Hub)
LISTING_CACHE = web.AppKey("listing_cache", ListingCache)
MEDIA = web.AppKey("media", MediaNode)
