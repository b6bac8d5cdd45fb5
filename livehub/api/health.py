"""Liveness and readiness probes for load balancers and orchestrators."""

import asyncio

from aiohttp import web

from livehub import keys
from livehub.api.routing import Api, Out
from livehub.errors import Unavailable

api = Api("health")


class HealthOut(Out):
    status: str


@api.get("/healthz", response=HealthOut)
async def healthz(request: web.Request) -> HealthOut:
    """The process is up"""
    return HealthOut(status="ok")


@api.get("/readyz", response=HealthOut)
async def readyz(request: web.Request) -> HealthOut:
    """The node can serve: its database answers"""
    try:
        async with asyncio.timeout(2):
            await request.app[keys.POOL].fetchval("SELECT 1")
    except (OSError, TimeoutError) as exc:
        raise Unavailable("database not reachable", {"reason": type(exc).__name__}) from None
    return HealthOut(status="ready")
