"""Giveaways: a giveaway with, once drawn, the entrants the draw used, so anyone can check it
(docs/PROTOCOL.md, "Giveaways"). Starting, entering and drawing happen over the room's websocket."""

from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub.api.routing import Api, Out, db, path_id
from livehub.errors import NotFound
from livehub.shop import giveaways

api = Api("giveaways")


class GiveawayOut(Out):
    giveaway: dict[str, Any] = Field(
        description="{id, stream_id, variant_id, product, eligibility, entries, seed_hash, starts_at, ends_at, "
        "ended, ended_reason, seed (hex, once ended), winner: {id, name} | null, order_id, prize_status}"
    )
    entrants: list[UUID] | None = Field(
        description="once it has ended: the entrants' user ids in the draw's order (sorted as text); null before"
    )


@api.get("/api/giveaways/{id}", auth="optional", response=GiveawayOut)
async def get_giveaway(request: web.Request) -> GiveawayOut:
    """A giveaway; once drawn, with its seed and the entrants, to check the winner"""
    found = await giveaways.giveaway_with_entrants(db(request), path_id(request))
    if found is None:
        raise NotFound("giveaway not found")
    return GiveawayOut.model_validate(found)
