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
from fastapi.responses import FileResponse

from guardians import files
from guardians.engine.audit import MAX_EVIDENCE_BYTES
from guardians.errors import GuardiansError
from guardians.ledger import tiles
from guardians.ledger.note import SignedNote
from guardians.ledger.store import LogStore


def ledger_app(directory: str | Path) -> FastAPI:
    d = Path(directory)
    app = FastAPI(title="Guardians transparency log", docs_url=None, redoc_url=None)

    def checkpoint() -> SignedNote:
        try:
            return SignedNote.parse(files.read_regular(d / "checkpoint", files.NOTE))
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
            return Response(files.read_regular(d / "trust.json", files.SMALL),
                            media_type="application/json")  # fmt: skip
        except OSError:
            raise HTTPException(404, "no trust.json") from None

    @app.get("/evidence/{name}")
    def get_evidence(name: str) -> Response:
        if not re.fullmatch(r"[0-9a-f]{64}\.cbor", name):
            raise HTTPException(404, "evidence is named by its SHA-256 digest")
        path = d / "evidence" / name
        try:
            st = path.lstat()
        except OSError:
            raise HTTPException(404, f"no evidence {name}") from None
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_EVIDENCE_BYTES:
            raise HTTPException(404, f"no evidence {name} (not a regular file of at most "
                                f"{MAX_EVIDENCE_BYTES} bytes)")  # fmt: skip
        immutable = {"Cache-Control": "public, max-age=31536000, immutable"}
        # Streamed from disk in chunks: a large file never sits whole in the server's memory.
        return FileResponse(path, media_type="application/cbor", headers=immutable)

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
