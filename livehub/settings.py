"""The one place that reads the environment.

Every knob is a field here with its default; the README's configuration table lists them. Variables
are `LIVEHUB_<FIELD>` (for example `LIVEHUB_PORT`), except the two connection URLs, which also answer
to the conventional `DATABASE_URL` and `REDIS_URL`.
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A CSP source naming one origin: scheme, host (a leading "*." for subdomains), optional port.
FrameAncestor = Annotated[str, Field(pattern=r"^https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:(\d{1,5}|\*))?$")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVEHUB_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "LIVEHUB_DATABASE_URL")
    )
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "LIVEHUB_REDIS_URL"))

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("var")

    db_pool_min: int = 2
    db_pool_max: int = 20
    # Bounded waits on the database, so that one that stops answering costs a caller a 503 within a few
    # seconds (docs/OPERATIONS.md, "Database faults"): for a pooled connection (opening one included), for
    # each statement on the node's side (past it the connection is dropped), and on the server's side
    # (statement_timeout; 0: none). Long statements by nature (CSV imports, reports) get the long budget.
    db_acquire_timeout_s: float = Field(default=1.0, gt=0)
    db_command_timeout_s: float = Field(default=2.0, gt=0)
    db_statement_timeout_s: float = Field(default=3.0, ge=0)
    db_long_statement_timeout_s: float = Field(default=120.0, gt=0)
    # run.py's embedded PostgreSQL is restarted if it dies; failing that for this long, the node exits (1).
    embedded_db_restart_s: float = Field(default=30.0, ge=0)
    # The garbage collector (livehub/collector.py): every this many seconds what survived a collection is
    # frozen out of later walks (0: CPython's collector as it comes, thresholds included); every
    # `gc_sweep_interval_s` everything is unfrozen and collected once; a young collection every this many
    # net allocations (CPython's default is 700).
    gc_freeze_interval_s: float = Field(default=10.0, ge=0)
    gc_sweep_interval_s: float = Field(default=900.0, gt=0)
    gc_young_threshold: int = Field(default=50_000, ge=1)

    # Sessions and cookies
    session_ttl_s: int = 30 * 24 * 3600
    cookie_secure: bool = False
    # Origins (scheme://host[:port]) allowed to make cookie-authenticated writes besides the server's own.
    allowed_origins: list[str] = []
    # Origins (https://blog.example, https://*.example:8443) whose pages may embed the viewer page
    # (/watch/{id}) in a frame; no other page is ever embeddable. Checked, since each goes into a header.
    frame_ancestors: list[FrameAncestor] = []

    # Sign-in limits (docs/OPERATIONS.md, "Sign-in limits"): failures are counted over this window.
    login_window_s: int = Field(default=900, ge=1)
    # Behind N reverse proxies, the client address is the Nth entry from the right of X-Forwarded-For.
    trusted_proxy_count: int = 0
    # Failures one (account, address) pair may have in the window; past it the pair gets 429.
    login_max_failures_per_pair: int = Field(default=5, ge=1)
    # With this many failures in the window on one account, or from one address, attempts from addresses
    # that have not signed in to that account wait: login_delay_s, doubling per further failure, at most
    # login_max_delay_s after the last attempt. Addresses the account signed in from are never slowed.
    login_slow_account_after: int = Field(default=10, ge=1)
    login_slow_address_after: int = Field(default=20, ge=1)
    login_delay_s: float = Field(default=1.0, gt=0)
    login_max_delay_s: float = Field(default=60.0, gt=0)
    # How long an address an account signed in from is remembered as its own (refreshed at each sign-in).
    login_known_address_ttl_s: int = Field(default=90 * 24 * 3600, ge=0)
    # Email verification and password reset links (docs/MESSAGES.md, "Accounts"): how long each works, and
    # the limits on asking for them. One account (verification) or one email (reset) gets at most one email
    # per account_email_interval_s and account_email_per_day a day; one client address asks for at most
    # password_reset_per_address_per_day resets a day (past a limit a reset request is dropped quietly).
    verify_email_ttl_s: int = Field(default=48 * 3600, ge=60)
    password_reset_ttl_s: int = Field(default=3600, ge=60)
    account_email_interval_s: int = Field(default=60, ge=0)
    account_email_per_day: int = Field(default=5, ge=1)
    password_reset_per_address_per_day: int = Field(default=50, ge=1)
    # Fernet keys (from `Fernet.generate_key()`) sealing two-factor secrets in the database; the first seals,
    # any opens. Empty: secrets are stored as they are.
    two_factor_keys: list[str] = []
    # The name authenticator apps show for a LiveHub account.
    two_factor_issuer: str = "LiveHub"

    # argon2id cost; the defaults are argon2-cffi's (RFC 9106 low-memory profile).
    password_time_cost: int = 3
    password_memory_kib: int = 65536
    password_parallelism: int = 4

    max_json_bytes: int = 64 * 1024
    max_upload_bytes: int = 8 * 1024 * 1024
    max_units_per_import: int = 50_000

    # Product images (docs/API.md, "Product images"). Where their bytes live: empty for files under
    # data_dir/media, or s3://bucket/prefix for an S3-compatible bucket (credentials from the standard AWS
    # variables; s3_endpoint_url for MinIO and the like). LiveHub serves them itself either way.
    media_store: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # An upload's size in bytes (also capped by max_upload_bytes) and pixels (width x height, checked from the
    # header before decoding: a small file can claim a huge picture), and images per product.
    max_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_images_per_product: int = Field(default=10, ge=1)
    # How long an Idempotency-Key is remembered.
    idempotency_ttl_s: int = 24 * 3600

    # Money. One currency per deployment; amounts are integer minor units (cents).
    currency: str = "USD"
    # The platform's fee on every sale, in basis points (1000 = 10%).
    platform_fee_bps: int = Field(default=1000, ge=0, le=10_000)
    # Earnings become available for payout on delivery, or this long after the sale at the latest.
    earnings_hold_s: int = 14 * 24 * 3600
    # When earnings past their hold are released: a cron schedule (UTC), each run on one node (livehub/jobs.py).
    earnings_release_cron: str = "* * * * *"
    # Show reminders (POST /api/streams/{id}/remind) go out this long before the stream's scheduled time.
    reminder_lead_s: int = Field(default=15 * 60, ge=0, le=7 * 24 * 3600)
    # A buyer may ask to return a delivered order for this long after its delivery.
    return_window_s: int = Field(default=30 * 24 * 3600, ge=0, le=2**31 - 1)
    # How top-ups are paid (docs/MONEY.md, "Card payments"), from LIVEHUB_PAYMENTS (LIVEHUB_PAYMENT_PROVIDER,
    # its older name, still works): "instant-dev" credits at once without moving real money (development
    # only); "stripe" takes cards through Stripe PaymentIntents and credits what Stripe says it captured.
    payment_provider: Literal["instant-dev", "stripe"] = Field(
        default="instant-dev",
        validation_alias=AliasChoices("LIVEHUB_PAYMENTS", "LIVEHUB_PAYMENT_PROVIDER"),
    )
    max_top_up_cents: int = 1_000_000
    # Stripe's keys, under the names Stripe users know (no LIVEHUB_ prefix); all three are required with
    # "stripe". stripe_api_base (LIVEHUB_STRIPE_API_BASE) points the client at a test server instead.
    stripe_secret_key: str | None = Field(default=None, validation_alias=AliasChoices("STRIPE_SECRET_KEY"))
    stripe_publishable_key: str | None = Field(default=None, validation_alias=AliasChoices("STRIPE_PUBLISHABLE_KEY"))
    stripe_webhook_secret: str | None = Field(default=None, validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET"))
    stripe_api_base: str | None = None
    # Where pages load Stripe.js from (LIVEHUB_STRIPE_JS_URL). Unset: Stripe's own, or with
    # LIVEHUB_STRIPE_API_BASE the test server's stand-in under it (localstripe serves /js.stripe.com/v3/).
    stripe_js_url: str | None = None
    # Card top-ups: the smallest one (Stripe charges at least 50 cents in USD), and what one user may top up
    # by card in any 24 hours (pending and succeeded payments; 0: no limit).
    card_min_top_up_cents: int = Field(default=50, ge=1)
    card_daily_top_up_cents: int = Field(default=500_000, ge=0)
    # The reconciliation job (cron, UTC) asks Stripe about card payments still pending this long after
    # they were opened (a webhook lost or late), up to card_reconcile_max_age_s after.
    card_reconcile_cron: str = "* * * * *"
    card_reconcile_after_s: int = Field(default=60, ge=0)
    card_reconcile_max_age_s: int = Field(default=7 * 24 * 3600, ge=60)
    # A card payment nobody paid (its intent still waiting for a card, a confirmation or 3-D Secure) this
    # long after it was opened: the reconciliation job cancels its intent at Stripe and the payment.
    card_payment_abandon_s: int = Field(default=3 * 3600, ge=60)
    # Who sends payouts (docs/MONEY.md, "Payout providers"): "manual", an admin pays by bank transfer and
    # records its reference when approving; "stripe-connect", a Stripe Transfer to the earner's connected
    # account (with STRIPE_SECRET_KEY, and LIVEHUB_STRIPE_API_BASE if set); "instant-dev", nothing moves
    # (development only).
    payouts: Literal["manual", "instant-dev", "stripe-connect"] = "manual"
    # The smallest payout a seller or host may ask for.
    min_payout_cents: int = Field(default=1000, ge=1)
    # Fernet keys (from `Fernet.generate_key()`) sealing payout destinations (bank details) in the database;
    # the first seals, any opens. Empty: destinations cannot be saved (503), except that an embedded database
    # (no DATABASE_URL) gets a key kept in data_dir/payout-keys (docs/OPERATIONS.md, "Payout destinations").
    payout_keys: list[str] = []
    # stripe-connect: the signing secret (whsec_...) of the Stripe webhook endpoint POST
    # /api/payouts/stripe/webhook, which hears reversed transfers (each Stripe endpoint has its own secret).
    stripe_connect_webhook_secret: str | None = None

    # How long a node serves a catalog listing page (GET /api/products) from memory; 0 turns it off.
    # Listing stock can be this much behind; product pages, orders and live rooms are always current.
    catalog_cache_ms: int = Field(default=1000, ge=0)

    # Live rooms. Each viewer gets one frame per period with everything that happened since its last one
    # (livehub/live/fanout.py). "adaptive": the period is `tick_ms` in a small room and grows with a big
    # room's viewers so that the room makes at most `tick_writes_per_s` socket writes a second (one per
    # viewer per frame), up to `tick_max_ms`; a room's viewers are sent in slices of `tick_slice_viewers`,
    # one slice per beat of a fixed clock (a beat's writes never delay the next). "fixed": the engine before
    # it, the baseline bench/fanout.py measures against: all viewers at once, `tick_ms` after each flush ends.
    tick_ms: int = Field(default=50, ge=10, le=1000)
    tick_mode: Literal["adaptive", "fixed"] = "adaptive"
    tick_writes_per_s: int = Field(default=50_000, ge=100)
    tick_max_ms: int = Field(default=500, ge=10, le=10_000)
    tick_slice_viewers: int = Field(default=500, ge=1)
    # How a tick reaches viewers: one frame with everything ("tick"), or one frame per event ("per_event",
    # the baseline bench/fanout.py measures against; never faster).
    fanout: Literal["tick", "per_event"] = "tick"
    # Unsent bytes one viewer may fall behind before it is closed with 4008 (too slow to keep up).
    viewer_buffer_kib: int = Field(default=256, ge=1)
    # Largest websocket frame a client may send; larger closes with 1009.
    max_ws_frame_bytes: int = 8 * 1024
    # Durable events per room kept for `?since=` recovery, on every node and in Redis.
    room_history_size: int = Field(default=1000, ge=10)
    # How long Redis keeps a quiet room's offsets, history and counters.
    room_history_ttl_s: int = 24 * 3600
    # Recent chat messages in a room's welcome frame.
    recent_chat: int = Field(default=50, ge=0)
    chat_max_chars: int = Field(default=500, ge=1)
    # Per user and room: chat messages per second and burst; reactions per second (burst twice that).
    chat_rate_per_s: float = 2.0
    chat_burst: int = 5
    reactions_per_s: float = 10.0
    # In-stream buying: requests for one variant are gathered this long, or up to this many, per storage call.
    buy_window_ms: float = 5.0
    buy_batch_max: int = Field(default=50, ge=1)
    # A variant's stock reaches the room (the broker, every viewer) at most this often while buys settle:
    # the latest value; the batch that ends a flash sale at once (livehub/live/checkout.py). 0: every batch.
    # 1 s rather than 250 ms: 10,000 buyers for 5,000 units settled 3,631-3,754/s instead of 1,699-2,363/s
    # (docs/BENCHMARKS.md, "Flash sale"), each buyer getting 3 room frames instead of 10-14.
    stock_update_ms: int = Field(default=1000, ge=0)
    # Units one buyer may take in a flash sale unless the host names another limit.
    flash_sale_per_buyer_limit: int | None = 1
    # Auctions (livehub/live/formats/auction.py): bids per second one bidder may send in a room (burst twice
    # that); a bid coalesces with others on the same auction like buys (buy_window_ms, buy_batch_max).
    bids_per_s: float = Field(default=5.0, gt=0)
    # Chat is written to PostgreSQL in the background; past this many unwritten messages the oldest are dropped.
    chat_buffer_max: int = 10_000
    # How often viewer counts are aggregated across nodes and stream stats written.
    presence_interval_s: float = 1.0
    # Prefix of every Redis key and channel, so several deployments can share one Redis.
    redis_prefix: str = "livehub"
    # Durable publishes (chat, pins, moderation) go to Redis pipelined, on a connection of their own: this
    # many at most per round trip (0: no pipeline, one pooled connection per publish, the baseline
    # bench/publish.py measures against), and at most this many waiting; past it a publish waits up to
    # 10 s for a place, then is answered `rate_limited` (docs/OPERATIONS.md, "Live rooms and several nodes").
    redis_publish_batch_max: int = Field(default=256, ge=0)
    redis_publish_queue_max: int = Field(default=10_000, ge=1)
    # How long Redis remembers a publish id, so that a publish retried after a lost reply is not doubled.
    redis_publish_id_ttl_s: int = Field(default=30, ge=1)
    # A product click counts once per person (a user, or one anonymous client) and product in this window.
    click_window_s: float = Field(default=60.0, gt=0)
    # Anonymous stream sockets from one client address on one node; past it the socket closes with 4029.
    # High by default: carrier-grade NAT puts thousands of phones behind one address.
    anonymous_sockets_per_address: int = Field(default=10_000, ge=1)

    # GET /metrics (docs/OPERATIONS.md, "Metrics"): served to loopback, or to anyone with this bearer token;
    # the biggest rooms by viewers labelled one by one (the rest summed); how often the books are checked.
    metrics_token: str | None = None
    metrics_top_rooms: int = Field(default=10, ge=0, le=100)
    metrics_books_every_s: float = Field(default=300.0, gt=0)

    # Media (WebRTC). "aiortc" relays through this node; "livekit" hands out LiveKit tokens instead.
    media_backend: Literal["aiortc", "livekit"] = "aiortc"
    # "encoded" forwards the publisher's encoded frames (no decode or re-encode; falls back to "decoded"
    # when the installed aiortc is not a supported version); "decoded" uses aiortc's MediaRelay.
    media_relay: Literal["encoded", "decoded"] = "encoded"
    # STUN/TURN servers handed to browsers and used by the node: [{"urls": [...], "username", "credential"}].
    media_ice_servers: list[dict] = []
    # Restrict the node's ICE host candidates to these addresses (e.g. ["127.0.0.1"]); empty: every interface.
    media_host_addresses: list[str] = []
    # Viewer sessions this node relays to; past it, watch answers 503 and names the scale-out backend.
    media_max_viewers: int = Field(default=200, ge=0)
    # A media session with no packets and no heartbeat for this long is closed (a tab that went away).
    media_session_timeout_s: float = Field(default=10.0, gt=0)
    # Watch sessions one client address may hold on this node; past it, watch answers 429.
    media_watch_per_address: int = Field(default=4, ge=1)
    # A media session whose ICE has not connected this long after its offer is closed, heartbeats or not.
    media_ice_timeout_s: float = Field(default=10.0, gt=0)
    # LiveKit (media_backend = "livekit"): the server's websocket URL, API key and secret; tokens last this long.
    livekit_url: str = "ws://127.0.0.1:7880"
    livekit_api_key: str | None = None
    livekit_api_secret: str | None = None
    livekit_token_ttl_s: int = Field(default=6 * 3600, ge=60)
    # Replays (docs/REPLAYS.md). The node relaying a show records the publisher's encoded frames (no
    # re-encoding) into data_dir/recordings while it runs and puts the finished file in the media store;
    # false: no show is recorded (a host can also opt a single stream out).
    record_shows: bool = True
    # Replays older than this many days are deleted by a scheduled job.
    replay_retention_days: int = Field(default=90, ge=1)
    # With the LiveKit backend LiveHub records nothing: LiveKit Egress does, and a replay's video is at this
    # URL, "{room}" and "{stream_id}" filled in (e.g. "https://cdn.example.com/egress/{room}.mp4").
    replay_url_template: str | None = None
    # The demo stream shows a generated test pattern (set by `run.py --demo`).
    demo_video: bool = False

    # Messages (docs/MESSAGES.md). Email goes over SMTP to smtp_url (smtp://user:pass@host:port, smtps://...
    # for implicit TLS, smtp+starttls://...); unset, each message is written as an .eml file under
    # data_dir/mail. Links in emails start with public_url; site_name names the shop in them.
    smtp_url: str | None = None
    mail_from: str = "LiveHub <noreply@localhost>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    public_url: str = "http://127.0.0.1:8080"
    site_name: str = "LiveHub"
    # The job queue (pgqueuer) running in every node: a failed job is tried again after job_retry_min_s,
    # doubled each time up to job_retry_max_s, job_attempts times in all; then it is kept as failed.
    jobs_enabled: bool = True
    job_attempts: int = Field(default=6, ge=1)
    job_retry_min_s: float = Field(default=2.0, gt=0)
    job_retry_max_s: float = Field(default=300.0, gt=0)
    # A node looks for due jobs at least this often. New jobs wake it at once (LISTEN/NOTIFY); a retry's new
    # time or a job left by a dead node is only seen by looking.
    job_poll_s: float = Field(default=2.0, gt=0)
    # A job whose node stopped beating for this long (killed) is picked up again by another node.
    job_heartbeat_timeout_s: float = Field(default=30.0, gt=0)
    # At shutdown, jobs running on the node get this long to finish.
    job_drain_s: float = Field(default=20.0, gt=0)
    # The job log (one row per job status change) is pruned daily to this many days.
    job_log_keep_days: int = Field(default=14, ge=1)

    # Backups (docs/OPERATIONS.md, "Backups"): where `livehub backup` and the schedule write (default
    # data_dir/backups); the schedule (cron, UTC; "off" for none; unset: daily at 03:15 for the embedded
    # database, none with DATABASE_URL, whose server is usually backed up by its operator); after each
    # scheduled or admin backup, the newest of each of the last keep_daily days and keep_weekly ISO weeks
    # are kept and the other files deleted.
    backup_dir: Path | None = None
    backup_schedule: str | None = None
    backup_keep_daily: int = Field(default=7, ge=1)
    backup_keep_weekly: int = Field(default=4, ge=0)

    # The log (docs/OPERATIONS.md, "Logs"): LiveHub's own level; one line per record as JSON or logfmt
    # (auto: logfmt on a terminal, JSON otherwise); the access log on or off; other libraries' level.
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "logfmt"] = "auto"
    access_log: bool = True
    library_log_level: str = "WARNING"
    # Read by `run.py create-admin` instead of prompting.
    admin_password: str | None = None

    @model_validator(mode="after")
    def _stripe_keys_present(self) -> "Settings":
        # Refuse to start rather than fail at the first top-up or drop every webhook.
        if self.payment_provider == "stripe":
            names = {
                "STRIPE_SECRET_KEY": self.stripe_secret_key,
                "STRIPE_PUBLISHABLE_KEY": self.stripe_publishable_key,
                "STRIPE_WEBHOOK_SECRET": self.stripe_webhook_secret,
            }
            if missing := [name for name, value in names.items() if not value]:
                raise ValueError(f"LIVEHUB_PAYMENTS=stripe needs {', '.join(missing)} set")
        # Transfers need the secret key, and a reversed transfer is only heard through the signed webhook.
        if self.payouts == "stripe-connect":
            names = {
                "STRIPE_SECRET_KEY": self.stripe_secret_key,
                "LIVEHUB_STRIPE_CONNECT_WEBHOOK_SECRET": self.stripe_connect_webhook_secret,
            }
            if missing := [name for name, value in names.items() if not value]:
                raise ValueError(f"LIVEHUB_PAYOUTS=stripe-connect needs {', '.join(missing)} set")
        return self

    @property
    def stripe_js(self) -> str:
        """The Stripe.js pages load (stripe_js_url, derived when unset)."""
        if self.stripe_js_url:
            return self.stripe_js_url
        if self.stripe_api_base:
            return self.stripe_api_base.rstrip("/") + "/js.stripe.com/v3/"
        return "https://js.stripe.com/v3/"
