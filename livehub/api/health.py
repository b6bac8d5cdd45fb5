"""Liveness and readiness probes for load balancers and orchestrators."""

import asyncio

from aiohttp import web

from livehub import keys
from livehub.api.routing import Api, Out
from livehub.errors import Unavailable

api = Api("health")


class HealthOut(Out):
    status: str


class LivenessOut(HealthOut):
    # Which node answered: tells processes behind one port or load balancer apart.
    node: str


@api.get("/healthz", response=LivenessOut)
async def healthz(request: web.Request) -> LivenessOut:
    """The process is up"""
    return LivenessOut(status="ok", node=request.app[keys.HUB].broker.node_id)


@api.get("/readyz", response=HealthOut)
async def readyz(request: web.Request) -> HealthOut:
    """The node can serve: its database answers"""
    try:
        async with asyncio.timeout(2):
            await request.app[keys.POOL].fetchval("SELECT 1")
    except (OSError, TimeoutError) as exc:
        raise Unavailable("database not reachable", {"reason": type(exc).__name__}) from None
    return HealthOut(status="ready")
