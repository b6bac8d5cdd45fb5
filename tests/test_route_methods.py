"""Every path of the OpenAPI document takes exactly the methods the document lists: an OPTIONS request's
`Allow` says so, and no route's path parameter swallows a sibling's literal segment (/api/sellers/apply
is not the seller "apply")."""

import re
import uuid

from tests.helpers import error_of

METHODS = {"get", "put", "post", "patch", "delete"}


async def test_allow_matches_the_document_for_every_path(client):
    spec = await (await client.get("/api/openapi.json")).json()
    wrong = {}
    for path, item in spec["paths"].items():
        documented = {m.upper() for m in item if m in METHODS}
        if "GET" in documented:
            documented.add("HEAD")
        concrete = re.sub(r"\{\w+\}", lambda _: str(uuid.uuid4()), path)
        res = await client.options(concrete)
        await res.read()
        allowed = {m.strip() for m in res.headers.get("Allow", "").split(",") if m.strip()}
        if res.status != 405 or allowed != documented:
            wrong[path] = (res.status, sorted(allowed), sorted(documented))
    assert not wrong, wrong


async def test_a_literal_segment_is_not_an_id(client, make):
    res = await client.get("/api/sellers/apply")
    await error_of(res, 405, "method_not_allowed")
    assert res.headers["Allow"] == "POST"
    # The parameter route still takes every spelling of an id it took before.
    seller = await make.seller()
    for spelling in (seller.seller["id"], seller.seller["id"].upper(), seller.seller["id"].replace("-", "")):
        res = await client.get(f"/api/sellers/{spelling}")
        assert res.status == 200, await res.text()
    await error_of(await client.get("/api/sellers/not-a-uuid"), 404, "not_found")
