"""HTTP transports. The log server: a read-only C2SP tlog-tiles endpoint over a log directory
(``guardians ledger serve``), plus ``/evidence/<sha256>.cbor``, the signed evidence of rejected
contributions the log names by digest. Every response is a static resource, so any web server
or CDN can mirror the log; the checkpoint is re-read on each request so a growing log is served
live."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from fastapi import FastAPI, HTTPException, Response

from guardians.errors import GuardiansError
from guardians.ledger import tiles
from guardians.ledger.note import SignedNote
from guardians.ledger.store import LogStore


def ledger_app(directory: str | Path) -> FastAPI:
    d = Path(directory)
    app = FastAPI(title="Guardians transparency log", docs_url=None, redoc_url=None)

    def checkpoint() -> SignedNote:
        try:
            return SignedNote.parse((d / "checkpoint").read_bytes())
        except (OSError, GuardiansError) as exc:
            raise HTTPException(503, f"no checkpoint available: {exc}") from None

    @app.get("/checkpoint")
    def get_checkpoint() -> Response:
        return Response(checkpoint().format(), media_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-cache, max-age=1"})  # fmt: skip

    @app.get("/trust.json")
    def get_trust() -> Response:
        # Convenience only: verifiers should pin their trust configuration out of band.
        try:
            return Response((d / "trust.json").read_bytes(), media_type="application/json")
        except OSError:
            raise HTTPException(404, "no trust.json") from None

    @app.get("/evidence/{name}")
    def get_evidence(name: str) -> Response:
        if not re.fullmatch(r"[0-9a-f]{64}\.cbor", name):
            raise HTTPException(404, "evidence is named by its SHA-256 digest")
        path = d / "evidence" / name
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                raise OSError("not a regular file")
            data = path.read_bytes()
        except OSError:
            raise HTTPException(404, f"no evidence {name}") from None
        immutable = {"Cache-Control": "public, max-age=31536000, immutable"}
        return Response(data, media_type="application/cbor", headers=immutable)

    @app.get("/tile/{path:path}")
    def get_tile(path: str) -> Response:
        try:
            store = LogStore(d / "log.db", readonly=True)
        except GuardiansError as exc:
            raise HTTPException(503, f"log unavailable: {exc}") from None
        try:
            body, ctype = tiles.serve(store, checkpoint(), "tile/" + path)
        except GuardiansError as exc:
            raise HTTPException(404, str(exc)) from None
        finally:
            store.close()
        immutable = {"Cache-Control": "public, max-age=31536000, immutable"}
        return Response(body, media_type=ctype, headers=immutable)

    return app
