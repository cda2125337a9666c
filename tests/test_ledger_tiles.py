"""C2SP tlog-tiles: paths, tile contents, and a real HTTP server audited by URL."""

import threading
import time

import pytest
import uvicorn
from typer.testing import CliRunner

from guardians.cli import app as cli
from guardians.engine.http import ledger_app
from guardians.engine.ports import free_port
from guardians.ledger.checkpoint import TransparencyLog
from guardians.ledger.merkle import MerkleTree, leaf_hash
from guardians.ledger.note import NoteSigner, SignedNote
from guardians.ledger.store import LogStore
from guardians.ledger.tiles import (
    TileError,
    download_log,
    encode_index,
    entry_bundle,
    parse_tile_path,
    serve,
    tile_bytes,
)
from tests.test_ledger_audit import make_log


def test_index_encoding_matches_the_spec_example():
    assert encode_index(1234067) == "x001/x234/067"
    assert (
        encode_index(0) == "000" and encode_index(999) == "999" and encode_index(1000) == "x001/000"
    )
    assert parse_tile_path("tile/0/x001/x234/067") == (0, 1234067, 256)
    assert parse_tile_path("tile/entries/012.p/7") == ("entries", 12, 7)
    for bad in ("tile/00/000", "tile/0/1", "tile/0/x01/000", "tile/64/000", "tile/0/000.p/0",
                "tile/0/000.p/256", "nottile/0/000"):  # fmt: skip
        with pytest.raises(TileError):
            parse_tile_path(bad)


def test_tiles_of_a_70000_entry_tree(tmp_path):
    store = LogStore(tmp_path / "log.db")
    data = [i.to_bytes(4, "big") for i in range(70_000)]
    for i in range(0, len(data), 5000):
        store.append_batch(data[i : i + 5000])
    size = store.size
    # The spec's example: 273 full level-0 tiles, a partial of width 112, one full level-1
    # tile, a partial level-1 tile of width 17 and a partial level-2 tile of width 1.
    assert len(tile_bytes(store, 0, 272, 256, size)) == 8192
    assert len(tile_bytes(store, 0, 273, 112, size)) == 112 * 32
    assert len(tile_bytes(store, 1, 0, 256, size)) == 8192
    assert len(tile_bytes(store, 1, 1, 17, size)) == 17 * 32
    assert len(tile_bytes(store, 2, 0, 1, size)) == 32
    with pytest.raises(TileError):
        tile_bytes(store, 0, 273, 256, size)  # not full yet
    with pytest.raises(TileError):
        tile_bytes(store, 0, 273, 100, size)  # not a width this size has
    # A level-1 hash is the root of the 256-leaf subtree under it.
    first = tile_bytes(store, 1, 0, 256, size)[:32]
    assert first == MerkleTree([leaf_hash(d) for d in data[:256]]).root()
    bundle = entry_bundle(store, 1, 256, size)
    assert bundle[:6] == (4).to_bytes(2, "big") + data[256]


@pytest.fixture
def logdir(tmp_path):
    return make_log(tmp_path / "ledger", rounds=200)  # 404 entries: two bundles


def test_static_export_round_trips_through_download(logdir, tmp_path):
    store = LogStore(logdir / "log.db")
    note = SignedNote.parse((logdir / "checkpoint").read_text())
    got, checked = download_log(lambda p: serve(store, note, p)[0], tmp_path / "copy")
    assert got == note and checked == 2 + 1  # level 0: a full and a partial tile; level 1: 1
    assert LogStore(tmp_path / "copy" / "log.db").root() == store.root()


class Server:
    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))  # fmt: skip
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_audit_by_url_over_real_http(logdir, tmp_path):
    runner = CliRunner()
    with Server(ledger_app(logdir)) as url:
        r = runner.invoke(cli, ["audit", "verify", "--log", url, "--state",
                                str(tmp_path / "state"), "--trust",
                                str(logdir / "trust.json")])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "hash tiles match the entries" in r.output and "VERIFIED" in r.output


def test_a_forked_tile_is_detected(logdir):
    app = ledger_app(logdir)

    @app.middleware("http")
    async def fork(request, call_next):
        response = await call_next(request)
        if request.url.path.startswith("/tile/0/"):
            body = b"".join([chunk async for chunk in response.body_iterator])
            body = bytes([body[0] ^ 1]) + body[1:]
            from starlette.responses import Response

            return Response(body, media_type="application/octet-stream")
        return response

    with Server(app) as url:
        r = CliRunner().invoke(cli, ["audit", "verify", "--log", url, "--trust",
                                     str(logdir / "trust.json")])  # fmt: skip
    assert r.exit_code == 1
    assert "disagrees with the entries" in " ".join(r.output.split())


def test_a_missing_log_is_unavailable_not_a_server_error(tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(ledger_app(tmp_path)) as client:
        r = client.get("/tile/0/000")
    assert r.status_code == 503 and "no log file" in r.json()["detail"]
    assert not (tmp_path / "log.db").exists()


def test_log_grows_while_served(tmp_path):
    store = LogStore(tmp_path / "log.db")
    log = TransparencyLog(store, "grow.example/log", NoteSigner("grow.example/log"))
    store.append_batch([b"a"] * 3)
    (tmp_path / "checkpoint").write_text(log.checkpoint().format())
    with Server(ledger_app(tmp_path)) as url:
        import httpx

        assert httpx.get(url + "checkpoint").text.split("\n")[1] == "3"
        store.append_batch([b"b"] * 4)
        (tmp_path / "checkpoint").write_text(log.checkpoint().format())
        assert httpx.get(url + "checkpoint").text.split("\n")[1] == "7"
        assert len(httpx.get(url + "tile/0/000.p/7").content) == 7 * 32
        assert httpx.get(url + "tile/0/000.p/9").status_code == 404


def _log_with_a_rejection(path):
    """A witnessed log whose round 1 excluded m1 for a bad proof, its evidence beside it."""
    from guardians.engine.audit import REJECTED_CONTRIBUTION, AuditTrail, LocalWitnesses
    from tests.test_secagg_contrib import NAMES, Verifiable, bad_proof_by

    wit = LocalWitnesses("c", NAMES[:5])
    keys = wit.identities
    result, _ = Verifiable(keys).run(bad_proof_by(keys, "m1"))
    trail = AuditTrail(path, "test.example/log", NAMES[:5])
    trail.admit({m: k.verify_key.raw for m, k in keys.items()})
    trail.record_incident(1, "m1", result.rejected["m1"], REJECTED_CONTRIBUTION,
                          result.evidence["m1"])  # fmt: skip
    wit.checkpoint(trail, timestamp=1_700_000_000)
    trail.close()
    return path


def test_audits_check_the_evidence_of_rejections_locally_and_over_http(tmp_path):
    import os

    from guardians.engine.audit import audit_log_dir

    log = _log_with_a_rejection(tmp_path / "log")
    trust = log / "trust.json"
    report = audit_log_dir(log, trust=trust, state=tmp_path / "s1")
    assert report.ok, report.checks
    assert (
        "1 rejected contribution(s)"
        in dict((n, d) for n, _, d in report.checks)["contribution evidence"]
    )
    with Server(ledger_app(log)) as url:
        r = CliRunner().invoke(cli, ["audit", "verify", "--log", url, "--trust", str(trust),
                                     "--state", str(tmp_path / "s2")])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "each its member's own signed proof" in " ".join(r.output.split())
        (evidence,) = (log / "evidence").iterdir()
        data = evidence.read_bytes()
        evidence.unlink()  # the server no longer has it: the audit by URL fails
        r = CliRunner().invoke(cli, ["audit", "verify", "--log", url, "--trust", str(trust),
                                     "--state", str(tmp_path / "s3")])  # fmt: skip
        assert r.exit_code == 1 and "no evidence file" in r.output
    # Locally too, and the auditor's state does not move past an unverified rejection.
    report = audit_log_dir(log, trust=trust, state=tmp_path / "s4")
    assert not report.ok and not (tmp_path / "s4").exists()
    # A device (or a pipe) planted in its place is refused without being read.
    os.symlink("/dev/zero", evidence)
    report = audit_log_dir(log, trust=trust, state=None)
    assert (
        "not a regular file" in dict((n, d) for n, _, d in report.checks)["contribution evidence"]
    )
    evidence.unlink()
    evidence.write_bytes(data)
    assert audit_log_dir(log, trust=trust, state=None).ok
