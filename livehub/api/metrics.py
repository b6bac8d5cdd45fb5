"""GET /metrics (Prometheus text format), the request-latency middleware, and the node's metric sampling.

Who may scrape: a caller on this host (loopback), or anyone with LIVEHUB_METRICS_TOKEN as a bearer token.
Behind a reverse proxy on the same host every request arrives from loopback, so with
LIVEHUB_TRUSTED_PROXY_COUNT set the real client's address (livehub/http.py) must be loopback too, and
without it a forwarded request (a proxy's header) is never taken for a local one.
"""

import hmac
import ipaddress
import time

from aiohttp import web

from livehub import keys, metrics
from livehub.api.routing import Api
from livehub.errors import Forbidden
from livehub.http import client_address
from livehub.tasks import cancel

api = Api("metrics")

CLUSTER = web.AppKey("metrics_cluster", metrics.ClusterFigures)
SAMPLE_EVERY_S = 5.0
# Headers a proxy adds: their presence means the loopback peer is a proxy forwarding someone else.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@api.get("/metrics", errors={403: "not from this host, and without the metrics token"})
async def scrape(request: web.Request) -> web.Response:
    """Prometheus metrics: from loopback, or with LIVEHUB_METRICS_TOKEN as a bearer token"""
    _check_access(request)
    app = request.app
    metrics.sample_process(app[keys.POOL], app.get(keys.MEDIA))
    cluster = app.get(CLUSTER)
    if cluster is not None:
        await cluster.refresh()
    response = web.Response(body=metrics.exposition(cluster))
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


def _check_access(request: web.Request) -> None:
    settings = request.app[keys.SETTINGS]
    if settings.metrics_token:
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
            return
    if _is_loopback(request.remote) and _is_loopback(_real_client(request)):
        return
    raise Forbidden("metrics are served to this host, or with the metrics token")


def _real_client(request: web.Request) -> str | None:
    if request.app[keys.SETTINGS].trusted_proxy_count and "X-Forwarded-For" in request.headers:
        return client_address(request)
    if any(h in request.headers for h in FORWARDING_HEADERS):
        return None  # forwarded without the header we were told to trust: not known to be local
    return request.remote


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@web.middleware
async def request_metrics(request: web.Request, handler) -> web.StreamResponse:
    """Each request's time to its response, by method, route template and status class. Websockets are left
    out (a socket's life is not a latency; livehub_websocket_connections counts them)."""
    started = time.perf_counter()
    status = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        status = 500
        raise
    finally:
        if status is not None and status != 101:  # 101: a websocket, answered when it closed
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            method = request.method if request.method in METHODS else "other"  # a client may send any word
            metrics.HTTP_REQUEST_SECONDS.labels(method, route, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )


async def sampling(app: web.Application):
    """This process's gauges (its pool, its media sessions) kept current between scrapes, and the cluster's
    figures read when a scrape comes."""
    pool, settings = app[keys.POOL], app[keys.SETTINGS]
    app[CLUSTER] = metrics.ClusterFigures(
        pool, app[keys.HUB], top_rooms=settings.metrics_top_rooms, books_every_s=settings.metrics_books_every_s
    )

    def sample() -> None:
        metrics.sample_process(pool, app.get(keys.MEDIA))

    sample()
    loop = app[keys.TASKS].every(SAMPLE_EVERY_S, sample, name="metrics-sample")
    yield
    await cancel(loop)
    await app[CLUSTER].close()
