"""The application factory: one aiohttp app per LiveHub node."""

import logging
import signal
from pathlib import Path

from aiohttp import web
from swagger_ui import api_doc

from livehub import __version__, demo, keys
from livehub.api import (
    account,
    admin,
    admin_accounts,
    auth,
    backups,
    card_payments,
    catalog,
    giveaways,
    health,
    hosts,
    images,
    media,
    metrics,
    notifications,
    orders,
    payouts,
    reminders,
    replay_video,
    replays,
    returns,
    reviews,
    sellers,
    shipping,
    stock_alerts,
    streams,
    tickets,
    wallet,
)
from livehub.api.access_log import access_log_options
from livehub.api.cache import ListingCache
from livehub.api.errors import error_middleware
from livehub.api.headers import security_headers
from livehub.api.openapi import build_openapi
from livehub.api.request_id import echo_request_id, request_context
from livehub.auth import PasswordHasher
from livehub.broker import open_backplane
from livehub.collector import Collector
from livehub.dbwatch import CHECK_EVERY_S, DatabaseState, EmbeddedWatch
from livehub.jsonx import json_response
from livehub.live import ws
from livehub.live.hub import Hub
from livehub.mediastore import STORE, media_store
from livehub.metrics import observe_db_acquire
from livehub.settings import Settings
from livehub.shop import payout_destinations
from livehub.shop.payments import provider_named
from livehub.shop.payouts import payout_provider_named
from livehub.signin_limits import LoginLimiter
from livehub.tasks import Supervisor, cancel
from livehub.twofactor import TwoFactor
from storage.db import close_pool, create_pool, long_statements, migrate
from storage.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
APIS = [
    health.api,
    auth.api,
    sellers.api,
    catalog.api,
    wallet.api,
    card_payments.api,
    orders.api,
    returns.api,
    shipping.api,
    reviews.api,
    account.api,
    payouts.api,
    streams.api,
    media.api,
    notifications.api,
    admin.api,
    admin_accounts.api,
    backups.api,
    reviews.admin_api,
    images.api,
    tickets.api,
    stock_alerts.api,
    reminders.api,
    replays.api,
    replay_video.api,
    hosts.api,
    giveaways.api,
    metrics.api,
]
DESCRIPTION = "LiveHub REST API. Errors: `{error: {code, message, details, request_id}}`; money in integer `_cents`."


async def database(app: web.Application):
    settings = app[keys.SETTINGS]
    if not settings.database_url:
        raise RuntimeError("no database: set DATABASE_URL, or start through run.py for the embedded one")
    pool = await create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        acquire_timeout_s=settings.db_acquire_timeout_s,
        command_timeout_s=settings.db_command_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
        long_statement_timeout_s=settings.db_long_statement_timeout_s,
        observe_acquire=observe_db_acquire,
    )
    # A migration may take as long as it takes (a new index on a big table): no budget.
    async with long_statements(pool, unbounded=True) as conn:
        await migrate(conn)
    app[keys.POOL] = pool
    yield
    await close_pool(pool)


async def accounts(app: web.Application):
    """Password hashing, the sign-in limits (and their sweep), two-factor secrets sealed under the first key."""
    settings = app[keys.SETTINGS]
    pool = app[keys.POOL]
    app[keys.HASHER] = PasswordHasher(settings)
    limiter = app[keys.LOGIN_LIMITER] = LoginLimiter(settings)
    two_factor = app[keys.TWO_FACTOR] = TwoFactor(settings)
    if not two_factor.box.encrypts:
        log.warning("LIVEHUB_TWO_FACTOR_KEYS is not set: two-factor secrets are stored unencrypted")
    if resealed := await two_factor.box.reseal_all(pool):
        log.info("sealed %d two-factor secrets under the first of LIVEHUB_TWO_FACTOR_KEYS", resealed)
    sweep = app[keys.TASKS].every(60, lambda: limiter.sweep(pool), name="sign-in-sweep")
    yield
    await cancel(sweep)


async def background(app: web.Application):
    """The supervisor of the node's background work; drained after everything that uses it has closed."""
    tasks = app[keys.TASKS] = Supervisor()
    yield
    await tasks.close()


async def money(app: web.Application):
    """The payment and payout providers, and payout destinations sealed under the first payout key.
    (Releasing earnings whose hold has passed is a job schedule: livehub/jobs.py.)"""
    settings = app[keys.SETTINGS]
    app[keys.PAYMENTS] = provider_named(settings.payment_provider)
    app[keys.PAYOUTS] = payout_provider_named(settings.payouts, settings)
    box = app[keys.PAYOUT_BOX] = payout_destinations.payout_box(settings.payout_keys)
    if not box.encrypts:
        log.warning("LIVEHUB_PAYOUT_KEYS is not set: payout destinations (bank details) cannot be saved")
    elif resealed := await payout_destinations.reseal_all(box, app[keys.POOL]):
        log.info("sealed %d payout destinations under the first of LIVEHUB_PAYOUT_KEYS", resealed)
    yield


async def cards(app: web.Application):
    """The node's Stripe client when top-ups are paid by card (LIVEHUB_PAYMENTS=stripe), else None."""
    from livehub.shop.card_payments import StripeCards

    settings = app[keys.SETTINGS]
    client = app[keys.CARDS] = StripeCards(settings) if settings.payment_provider == "stripe" else None
    yield
    if client is not None:
        await client.close()


async def live(app: web.Application):
    """The backplane (Redis when REDIS_URL is set, else in-process) and this node's hub of rooms."""
    backplane = open_backplane(app[keys.SETTINGS])
    await backplane.start()
    hub = app[keys.HUB] = Hub(backplane, app[keys.POOL], app[keys.SETTINGS], app[keys.TASKS])
    await hub.start()
    yield
    await hub.close()
    await backplane.close()


async def job_queue(app: web.Application):
    """The node's mailer and its share of the durable job queue (livehub/jobs.py): after the hub, which
    deliveries push through, and stopped before it (running jobs finish first)."""
    from livehub.jobs import Jobs
    from livehub.mail import Mailer

    settings = app[keys.SETTINGS]
    mailer = app[keys.MAILER] = Mailer(settings)
    jobs = app[keys.JOBS] = Jobs(settings, app[keys.POOL], app[keys.HUB], mailer)
    if settings.jobs_enabled:
        await jobs.start()
    yield
    await jobs.close()


async def media_plane(app: web.Application):
    """The aiortc media node (publishers and viewers relayed here); none with the livekit backend."""
    settings = app[keys.SETTINGS]
    if settings.media_backend != "aiortc":
        yield
        return
    from livehub.media.sessions import MediaNode

    # The media store is open by now (media_store comes first in cleanup_ctx): recordings end up there.
    node = app[keys.MEDIA] = MediaNode(settings, app[keys.TASKS], app[keys.POOL], store=app[STORE])
    await node.start()
    yield
    await node.close()


async def garbage_collector(app: web.Application):
    """Last at start-up: what the node holds from now on is frozen out of the collector's walks
    (livehub/collector.py); put back at shutdown."""
    collector = Collector(app[keys.SETTINGS])
    collector.start()
    loop = None
    if collector.enabled:
        loop = app[keys.TASKS].every(collector.freeze_interval_s, collector.tick, name="gc-freeze")
    yield
    await cancel(loop)
    collector.stop()


async def close_live_connections(app: web.Application) -> None:
    # On shutdown, before handlers are waited for: open websockets would otherwise hold the server up.
    if keys.HUB in app:
        await app[keys.HUB].close_connections()


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[keys.OPENAPI])


# The browser pages: plain HTML files under static/, each with its own address.
PAGES = {
    "/": "index.html",
    "/signin": "signin.html",
    "/watch/{id}": "watch.html",
    # A recorded show: the video with its chat and pins in step, the line-up to buy (docs/REPLAYS.md).
    "/replay/{id}": "replay.html",
    "/studio": "studio.html",
    "/seller": "seller.html",
    "/admin": "admin.html",
    "/security": "security.html",
    # The buyer's shop pages.
    "/products/{id}": "product.html",
    "/shops/{id}": "shop.html",
    "/cart": "cart.html",
    "/checkout": "checkout.html",
    "/orders": "orders.html",
    "/orders/{id}": "order.html",
    "/wallet": "wallet.html",
    "/account": "account.html",
    # Emailed links (docs/MESSAGES.md, "Accounts"): verify the email address; ask for and set a new password.
    "/verify-email": "verify-email.html",
    "/reset-password": "reset-password.html",
    # Your notifications (the header bell's inbox) and which of them are emailed.
    "/notifications": "notifications.html",
    # Support tickets: yours, your shop's, and the admin queue; /support/{id} opens one.
    "/support": "support.html",
    "/support/{id}": "support.html",
}


async def name_the_node(request: web.Request, response: web.StreamResponse) -> None:
    """`X-LiveHub-Node` on every response (websocket handshakes included): which node answered, the id
    /healthz gives, so that behind a load balancer a request can be traced to the node that served it."""
    if (hub := request.app.get(keys.HUB)) is not None:
        response.headers["X-LiveHub-Node"] = hub.broker.node_id


def page(name: str):
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name)

    return handler


async def watch_embedded(app: web.Application):
    """The embedded PostgreSQL (run.py without DATABASE_URL) restarted if it dies (livehub/dbwatch.py)."""
    loop = app[keys.TASKS].every(CHECK_EVERY_S, app[keys.EMBEDDED_WATCH].check, name="embedded-database")
    yield
    await cancel(loop)


def create_app(settings: Settings | None = None, *, embedded: EmbeddedPostgres | None = None) -> web.Application:
    """A node. `embedded`: the PostgreSQL server this process started for it, which the node keeps up."""
    settings = settings or Settings()
    app = web.Application(middlewares=[request_context, error_middleware], client_max_size=settings.max_upload_bytes)
    app[keys.SETTINGS] = settings
    # Outside the error middleware, so a request is counted under the status it was answered with.
    app.middlewares.insert(app.middlewares.index(error_middleware), metrics.request_metrics)
    app[keys.LISTING_CACHE] = ListingCache(settings.catalog_cache_ms / 1000)
    app[keys.OPENAPI] = build_openapi(APIS, title="LiveHub", version=__version__, description=DESCRIPTION)
    app.cleanup_ctx.extend([database, background, accounts, money, live, job_queue, media_store, media_plane])
    app.cleanup_ctx.append(cards)
    if settings.demo_video:
        app.cleanup_ctx.append(demo.demo_video)
    if embedded is not None:
        # Giving up stops the node as SIGTERM would (websockets closed first), then run.py exits with 1.
        app[keys.EMBEDDED_WATCH] = EmbeddedWatch(
            embedded,
            give_up_after_s=settings.embedded_db_restart_s,
            give_up=lambda: signal.raise_signal(signal.SIGTERM),
        )
        app.cleanup_ctx.append(watch_embedded)
    app.cleanup_ctx.append(metrics.sampling)
    app.cleanup_ctx.append(garbage_collector)
    for api in APIS:
        app.router.add_routes(api.table())
    app.on_shutdown.append(close_live_connections)
    app.on_response_prepare.append(security_headers(PAGES))
    app.on_response_prepare.append(echo_request_id)
    app.on_response_prepare.append(name_the_node)
    app.router.add_get("/ws/streams/{id}", ws.stream_socket)
    app.router.add_get("/ws/me", ws.user_socket)
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_routes(images.serving)
    # swagger_ui puts config_rel_url after url_prefix: the page fetches /api/docs/../openapi.json = /api/openapi.json.
    api_doc(app, config_rel_url="/../openapi.json", url_prefix="/api/docs", title="LiveHub API")
    for path, name in PAGES.items():
        app.router.add_get(path, page(name))
    app.router.add_static("/static", STATIC)
    return app


def serve(
    settings: Settings, *, embedded: EmbeddedPostgres | None = None, reuse_port: bool = False, **run_app_options
) -> int:
    """Run a node until SIGINT/SIGTERM; the exit status: 1 if its embedded database died for good. (uvloop was
    measured and made no difference to the fan-out: its cost is one send() per viewer either way;
    docs/BENCHMARKS.md.)"""
    # Websocket session tokens ride in the URL: the access log shows secrets redacted (or is off).
    for option, value in access_log_options(settings).items():
        run_app_options.setdefault(option, value)
    app = create_app(settings, embedded=embedded)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port,
        print=None,
        **run_app_options,
    )
    watch = app.get(keys.EMBEDDED_WATCH)
    return 1 if watch is not None and watch.state is DatabaseState.GONE else 0
