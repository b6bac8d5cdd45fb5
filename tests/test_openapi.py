"""The served OpenAPI document is valid and covers every API route the app mounts."""

import posixpath
import re

from openapi_spec_validator import validate

UNDOCUMENTED = ("/api/docs", "/api/openapi.json")


async def test_spec_is_valid_openapi_and_covers_every_route(client):
    res = await client.get("/api/openapi.json")
    assert res.status == 200
    spec = await res.json()
    validate(spec)

    mounted = set()
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method in ("HEAD", "*") or path.startswith(UNDOCUMENTED):
            continue
        if path.startswith("/api/") or path in ("/healthz", "/readyz", "/metrics"):
            mounted.add((route.method.lower(), path))
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert mounted == documented


async def test_spec_describes_bodies_and_auth(client):
    spec = await (await client.get("/api/openapi.json")).json()
    create = spec["paths"]["/api/products"]["post"]
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = spec["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert {"title", "variants"} <= set(body["required"])
    assert body["additionalProperties"] is False
    assert create["security"] == [{"bearer": []}, {"cookie": []}]
    assert "security" not in spec["paths"]["/api/products"]["get"]
    listing = spec["paths"]["/api/products"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"q", "category", "seller", "in_stock", "limit", "cursor"}


async def test_docs_page_renders_the_spec(client):
    res = await client.get("/api/docs")
    assert res.status == 200
    html = await res.text()
    # The page fetches the spec from a URL that resolves to /api/openapi.json (its loading in a real browser is
    # tests/browser/test_api_docs.py).
    (url,) = re.findall(r'url: "([^"]+)"', html)
    assert posixpath.normpath(url) == "/api/openapi.json"
    assert (await client.get(url)).status == 200
    asset = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert asset.status == 200
