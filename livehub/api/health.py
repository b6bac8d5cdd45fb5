"""Liveness and readiness probes for load balancers and orchestrators."""

import asyncio

from aiohttp import web

from livehub import keys
from livehub.api.routing import Api, Out
from livehub.dbwatch import DatabaseState
from livehub.errors import Unavailable, to_error

api = Api("health")


class HealthOut(Out):
    status: str


class LivenessOut(HealthOut):
    # Which node answered: tells processes behind one port or load balancer apart.
    node: str
    # A node that runs its own PostgreSQL (run.py without DATABASE_URL): "running", or "restarting" after it
    # died. None with DATABASE_URL.
    embedded_database: DatabaseState | None = None


@api.get("/healthz", response=LivenessOut)
async def healthz(request: web.Request) -> LivenessOut:
    """The process is up and can serve, or will again by itself (503: it cannot, and is stopping)"""
    watch = request.app.get(keys.EMBEDDED_WATCH)
    if watch is not None and watch.state is DatabaseState.GONE:
        raise Unavailable(
            "this node's embedded database died and could not be restarted; the node is stopping",
            {"embedded_database": watch.state.value},
        )
    return LivenessOut(
        status="ok",
        node=request.app[keys.HUB].broker.node_id,
        embedded_database=watch.state if watch is not None else None,
    )


@api.get("/readyz", response=HealthOut)
async def readyz(request: web.Request) -> HealthOut:
    """The node can serve: its database answers"""
    try:
        async with asyncio.timeout(2):
            await request.app[keys.POOL].fetchval("SELECT 1")
    except Exception as exc:
        if not isinstance(to_error(exc), Unavailable):
            raise
        raise Unavailable("database not reachable", {"reason": type(exc).__name__}) from None
    return HealthOut(status="ready")
