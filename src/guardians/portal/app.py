"""The transparency portal's web app: a read-only JSON API over a demo output directory, and one
static page (plain HTML, CSS and JavaScript shipped in the package: no build step, nothing
fetched from the network).

Every API response is computed from the files as they are now (see :mod:`.snapshot`), so a
page that refreshes shows a running demo's new rounds. The page fetches ``/api/summary``, then
one inclusion proof per model version, and checks each proof itself with WebCrypto.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from guardians.portal.snapshot import (
    NotFoundError,
    Portal,
    UnavailableError,
    check_demo_dir,
)

STATIC = Path(__file__).parent / "static"

# The page loads only its own files and talks only to this server: the policy makes the
# browser enforce "works offline, nothing from the network", and keeps ledger text (member
# names, incident details) from ever running as script.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

SECTIONS = {
    "consortium": "consortium",
    "members": "members",
    "rounds": "rounds",
    "models": "models",
    "checkpoint": "checkpoint",
    "anchor": "anchor",
    "incidents": "incidents",
    "intel": "intel",
    "under-attack": "under_attack",
}

log = logging.getLogger(__name__)


def create_app(
    demo_dir: str | Path, *, trust: str | Path | None = None, refresh_seconds: float = 5.0
) -> FastAPI:
    """The portal over ``demo_dir`` (the output of ``guardians demo --out``). ``trust``: the
    consortium's trust file, pinned out of band (default: ``demo_dir/trust.json``, the genesis
    trust the demo hands to auditors; never the copy inside ``ledger/``). Raises PortalError if
    ``demo_dir`` is not a demo output directory."""
    d = check_demo_dir(demo_dir)
    portal = Portal(d, Path(trust) if trust is not None else d / "trust.json", refresh_seconds)
    # FastAPI's interactive docs load their scripts from a CDN: off, the portal works offline.
    app = FastAPI(title="Guardians transparency portal", docs_url=None, redoc_url=None)
    app.state.portal = portal

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"  # the ledger changes under us
        return response

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Last resort: expected failures are reported inside the snapshot; anything else is a
        # bug, logged here and answered without a traceback.
        log.exception("portal: %s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/summary")
    def summary() -> dict[str, Any]:
        """Everything the page shows, with the verdict and every check made."""
        return portal.snapshot()

    def section(key: str) -> Callable[[], dict[str, Any]]:
        def get() -> dict[str, Any]:
            snap = portal.snapshot()
            return {"verdict": snap["verdict"], "generated_at": snap["generated_at"],
                    key: snap[key]}  # fmt: skip

        return get

    for path, key in SECTIONS.items():
        app.add_api_route(f"/api/{path}", section(key), methods=["GET"], name=key)

    @app.get("/api/proof/{index}")
    def proof(
        index: int,
        size: int | None = Query(None, description="tree size (default: the latest checkpoint)"),
    ) -> JSONResponse:
        """RFC 9162 inclusion proof of log entry ``index``: the entry, its leaf hash, the audit
        path and the root of the tree of ``size``."""
        try:
            return JSONResponse(portal.proof(index, size), headers={"Cache-Control": "no-store"})
        except NotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except UnavailableError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)

    return app
