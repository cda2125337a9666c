"""A TAXII 2.1 server (OASIS TAXII 2.1, sections 4–5) over the consortium's intel store:
discovery, API root, collections, objects (with ``added_after``, ``limit``/``next`` paging,
``match[id]`` and ``match[type]``), one object, manifest, status. ``guardians intel serve``.

Media type ``application/taxii+json;version=2.1`` both ways; a request that accepts nothing we
can send gets 406, a body over the API root's limit 413, anything that is not valid STIX 2.1 or not
authenticated a TAXII error message with 400, a replayed object 409, an anonymous source over
its quota 429 (and in every case nothing of the request is stored), an unknown collection or
status 404.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from guardians.intel.auth import IntelAuthError
from guardians.intel.stix import MAX_BUNDLE_BYTES, IntelFormatError
from guardians.intel.store import (
    Authenticate,
    FloodError,
    IntelStore,
    ReplayError,
    UnknownCollectionError,
)

TAXII = "application/taxii+json;version=2.1"
API_ROOT = "api"
MAX_WAITERS = 1000


def _error(status: int, title: str, description: str = "") -> JSONResponse:
    return JSONResponse({"title": title, "description": description, "http_status": str(status)},
                        status_code=status, media_type=TAXII)  # fmt: skip


def _ok(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=TAXII, headers=dict(headers or {}))


def taxii_app(
    store: IntelStore,
    *,
    title: str = "Guardians consortium intel",
    users: Mapping[str, str] | None = None,
    max_content_length: int = MAX_BUNDLE_BYTES,
    authenticate: Authenticate | None = None,
    per_source: int = 100,
) -> FastAPI:
    """``users``: HTTP Basic credentials (name → password); None leaves the server open.
    ``authenticate``: checks each posted object's member signature or membership proof (see
    :mod:`guardians.intel.auth`); ``per_source`` caps an anonymous source's objects."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    # Wakes long-polling readers when objects are added (see get_objects' ``wait``).
    added = {"event": asyncio.Event()}
    waiters = {"n": 0}

    @app.middleware("http")
    async def checks(request: Request, call_next: Any) -> Response:
        if users is not None:
            auth = request.headers.get("authorization", "")
            ok = False
            if auth.startswith("Basic "):
                try:
                    name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    ok = name in users and hmac.compare_digest(users[name].encode(), pw.encode())
                except (ValueError, UnicodeDecodeError):
                    ok = False
            if not ok:
                resp = _error(401, "unauthorized", "HTTP Basic credentials required")
                resp.headers["WWW-Authenticate"] = 'Basic realm="taxii"'
                return resp
        accept = request.headers.get("accept", "*/*")
        if not any(a.strip().split(";")[0] in ("*/*", "application/*", "application/taxii+json")
                   for a in accept.split(",")):  # fmt: skip
            return _error(406, "not acceptable", f"this server sends {TAXII}")
        return await call_next(request)  # type: ignore[no-any-return]

    def api_root_ok(root: str) -> None:
        if root != API_ROOT:
            raise UnknownCollectionError(f"no API root {root!r}")

    @app.exception_handler(UnknownCollectionError)
    async def not_found(request: Request, exc: UnknownCollectionError) -> JSONResponse:
        return _error(404, "not found", str(exc))

    @app.exception_handler(IntelFormatError)
    async def bad(request: Request, exc: IntelFormatError) -> JSONResponse:
        return _error(400, "invalid STIX content", str(exc))

    @app.exception_handler(IntelAuthError)
    async def unauthentic(request: Request, exc: IntelAuthError) -> JSONResponse:
        return _error(400, "unauthenticated object", str(exc))

    @app.exception_handler(ReplayError)
    async def replay(request: Request, exc: ReplayError) -> JSONResponse:
        return _error(409, "replayed object", str(exc))

    @app.exception_handler(FloodError)
    async def flood(request: Request, exc: FloodError) -> JSONResponse:
        return _error(429, "too many objects from one anonymous source", str(exc))

    @app.get("/taxii2/")
    def discovery(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        return _ok({"title": title, "default": f"{base}/{API_ROOT}/",
                    "api_roots": [f"{base}/{API_ROOT}/"]})  # fmt: skip

    @app.get("/{root}/")
    def api_root(root: str) -> JSONResponse:
        api_root_ok(root)
        return _ok({"title": title, "versions": [TAXII], "max_content_length": max_content_length})

    @app.get("/{root}/collections/")
    def collections(root: str) -> JSONResponse:
        api_root_ok(root)
        return _ok({"collections": store.collections()})

    @app.get("/{root}/collections/{cid}/")
    def collection(root: str, cid: str) -> JSONResponse:
        api_root_ok(root)
        return _ok(store.collection(cid))

    def _paging(request: Request) -> dict[str, Any]:
        q = request.query_params
        try:
            limit = min(max(int(q.get("limit", "100")), 1), 1000)
        except ValueError:
            raise IntelFormatError(f"limit must be an integer, not {q.get('limit')!r}") from None
        types = q.get("match[type]")
        return {"added_after": q.get("added_after"), "limit": limit, "next": q.get("next"),
                "object_id": q.get("match[id]"),
                "types": types.split(",") if types else None}  # fmt: skip

    def _headers(first: str | None, last: str | None) -> dict[str, str]:
        h = {}
        if first:
            h["X-TAXII-Date-Added-First"] = first
        if last:
            h["X-TAXII-Date-Added-Last"] = last
        return h

    @app.get("/{root}/collections/{cid}/objects/")
    async def get_objects(root: str, cid: str, request: Request) -> JSONResponse:
        """TAXII objects; our extension ``wait=SECONDS`` (≤ 60) holds an empty answer open
        until something is added, so members learn of new intel at once instead of at their
        next poll."""
        api_root_ok(root)
        try:
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            raise IntelFormatError("wait must be a number of seconds") from None
        if not math.isfinite(wait):
            raise IntelFormatError("wait must be a finite number of seconds")
        wait = min(max(wait, 0.0), 60.0)
        if wait and waiters["n"] >= MAX_WAITERS:
            return _error(503, "busy", "too many long polls open; poll without wait")
        deadline = asyncio.get_running_loop().time() + wait
        p = store.page(cid, **_paging(request))
        waiters["n"] += 1
        try:
            while not p.objects and wait:
                event = added["event"]
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(event.wait(), timeout=left)
                except TimeoutError:
                    break
                p = store.page(cid, **_paging(request))
        finally:
            waiters["n"] -= 1
        body: dict[str, Any] = {"more": p.more, "objects": p.objects}
        if p.next:
            body["next"] = p.next
        return _ok(body, headers=_headers(p.first_added, p.last_added))

    @app.post("/{root}/collections/{cid}/objects/")
    async def add_objects(root: str, cid: str, request: Request) -> JSONResponse:
        api_root_ok(root)
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/taxii+json"):
            return _error(415, "unsupported media type", f"send {TAXII}")
        try:
            size = int(request.headers.get("content-length", "0") or 0)
        except ValueError:
            return _error(400, "bad request", "Content-Length is not a number")
        if size > max_content_length:
            return _error(413, "too large", f"{size} bytes; the limit is {max_content_length}")
        chunks, got = [], 0
        async for chunk in request.stream():  # stop reading as soon as the limit is passed
            got += len(chunk)
            if got > max_content_length:
                return _error(413, "too large", f"over {max_content_length} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        # Parsing and proof checks take milliseconds: off the event loop.
        status = await asyncio.to_thread(
            store.add, cid, body, max_bytes=max_content_length, authenticate=authenticate,
            per_source=per_source,
        )  # fmt: skip
        event, added["event"] = added["event"], asyncio.Event()
        event.set()
        return _ok(status, status=202)

    @app.get("/{root}/collections/{cid}/objects/{oid}/")
    def get_object(root: str, cid: str, oid: str, request: Request) -> JSONResponse:
        api_root_ok(root)
        p = store.page(cid, object_id=oid, limit=1000)
        if not p.objects:
            raise UnknownCollectionError(f"no object {oid!r} in {cid!r}")
        return _ok({"more": False, "objects": p.objects},
                   headers=_headers(p.first_added, p.last_added))  # fmt: skip

    @app.get("/{root}/collections/{cid}/manifest/")
    def manifest(root: str, cid: str, request: Request) -> JSONResponse:
        api_root_ok(root)
        items, p = store.manifest(cid, **_paging(request))
        body: dict[str, Any] = {"more": p.more, "objects": items}
        if p.next:
            body["next"] = p.next
        return _ok(body, headers=_headers(p.first_added, p.last_added))

    @app.get("/{root}/status/{sid}/")
    def status(root: str, sid: str) -> JSONResponse:
        api_root_ok(root)
        return _ok(store.status(sid))

    return app
