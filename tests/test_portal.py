"""The transparency portal: its API over a demo directory (honest, tampered, incomplete), the
CLI, and the page in a real browser (Debian's Chromium driven by Playwright), checked against
the ledger read independently here."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from guardians import codec
from guardians.cli import app as cli_app
from guardians.engine.audit import AuditTrail, LocalWitnesses
from guardians.ledger.checkpoint import TransparencyLog, Witness
from guardians.ledger.entries import Incident, ModelPromoted, RoundCommitted
from guardians.ledger.merkle import RootMismatchError, verify_inclusion
from guardians.ledger.store import LogStore
from guardians.portal import PortalError, create_app
from guardians.portal.app import STATIC

with warnings.catch_warnings():
    # Starlette's test client asks for httpx2 (we pin httpx) and uses a deprecated anyio alias:
    # neither is ours to fix.
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*BlockingPortal.*")
    from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(__file__).parent / "vectors" / "merkle"


# --- the ledger, read here without the portal ------------------------------------------------
def read_ledger(demo: Path) -> dict[str, Any]:
    """The checkpoint parsed by hand and the log's entries read with sqlite3 (read-only)."""
    text = (demo / "ledger" / "checkpoint").read_text().split("\n\n")[0]
    origin, size, root = text.split("\n")[:3]
    db = sqlite3.connect(f"file:{demo / 'ledger' / 'log.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT idx, data FROM entries ORDER BY idx").fetchall()
    finally:
        db.close()
    entries = [(int(i), codec.decode(bytes(d))) for i, d in rows if int(i) < int(size)]
    return {
        "origin": origin,
        "size": int(size),
        "root": base64.b64decode(root).hex(),
        "models": [(i, e.model_hash.hex()) for i, e in entries if isinstance(e, ModelPromoted)],
        "rounds": [e.round for _, e in entries if isinstance(e, RoundCommitted)],
        "incidents": [e for _, e in entries if isinstance(e, Incident)],
    }


def copy_demo(demo: Path, tmp_path: Path) -> Path:
    out = tmp_path / "demo"
    shutil.copytree(demo, out)
    return out


def summary(client: TestClient) -> dict[str, Any]:
    r = client.get("/api/summary")
    assert r.status_code == 200, r.text
    return r.json()


def checks(snap: dict[str, Any]) -> dict[str, bool | None]:
    return {c["check"]: c["ok"] for c in snap["checks"]}


def checks_detail(snap: dict[str, Any]) -> str:
    return " | ".join(c["detail"] for c in snap["checks"])


# --- a small live log, written here (no demo needed) -------------------------------------------
def digest(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


class LiveLog:
    """A consortium log growing under the portal, as during a running demo."""

    MEMBERS = ("member-01", "member-02", "member-03")

    def __init__(self, root: Path) -> None:
        self.dir = root
        self.trail = AuditTrail(root / "ledger", "portal-test.example/live", self.MEMBERS)
        self.witnesses = LocalWitnesses("portal-test", self.MEMBERS)
        self.trail.admit({m: k.verify_key.raw for m, k in self.witnesses.identities.items()})
        self.witnesses.enrol(self.trail)
        # The founder hands the genesis trust to auditors: that copy is the pinned one.
        shutil.copy(root / "ledger" / "trust.json", root / "trust.json")
        self.rounds = 0
        self.clock = 1_700_000_000

    def add_round(self) -> None:
        self.rounds += 1
        model = digest("model", self.rounds)
        self.trail.append(
            RoundCommitted(
                round=self.rounds,
                participants=self.MEMBERS,
                rule="fedavg",
                privacy="secagg",
                model_hash=model,
                aggregate_hash=digest("aggregate", self.rounds),
            ),
            ModelPromoted(version=self.rounds, model_hash=model),
        )
        self.clock += 1
        self.witnesses.checkpoint(self.trail, timestamp=self.clock)


# --- the API --------------------------------------------------------------------------------
def test_api_reports_the_demo_ledger(quick_demo):
    ledger = read_ledger(quick_demo)
    client = TestClient(create_app(quick_demo))
    snap = summary(client)
    assert snap["verdict"] == "verified", snap["checks"]
    assert all(checks(snap).values())
    assert checks(snap)["witness attestations"] is True  # the members' own witnesses
    cp = snap["checkpoint"]
    assert (cp["size"], cp["root_hex"], cp["origin"]) == (
        ledger["size"],
        ledger["root"],
        ledger["origin"],
    )
    assert cp["valid_cosignatures"] == 4 and cp["quorum"] == 3
    assert [(m["index"], m["model_hash"]) for m in snap["models"]] == ledger["models"]
    assert all(m["server_inclusion"]["ok"] for m in snap["models"])
    assert [r["round"] for r in snap["rounds"]] == ledger["rounds"] == list(range(1, 13))
    assert len(snap["incidents"]) == len(ledger["incidents"])
    anchor = json.loads((quick_demo / "ledger" / "anchor.json").read_text())
    assert snap["anchor"]["contract"] == anchor["contract"]
    assert snap["anchor"]["latest"]["size"] == max(a["size"] for a in anchor["anchored"])
    assert snap["anchor"]["consistent"] and snap["anchor"]["contract_matches_trust"]
    scores = json.loads((quick_demo / "metrics.json").read_text())["federated"]["reputation"]
    assert {m["member"]: m["reputation"] for m in snap["members"]} == scores["scores"]
    assert snap["intel"]["feed_objects"] > 0 and snap["under_attack"]["runs"]
    # Each section has its own endpoint.
    for path in (
        "consortium",
        "members",
        "rounds",
        "models",
        "checkpoint",
        "anchor",
        "incidents",
        "intel",
        "under-attack",
    ):
        r = client.get(f"/api/{path}")
        assert r.status_code == 200 and r.json()["verdict"] == "verified"

    # The proof endpoint's answer verifies here, against the checkpoint's root.
    index, model_hash = ledger["models"][-1]
    p = client.get(f"/api/proof/{index}").json()
    entry = bytes.fromhex(p["entry"])
    assert bytes.fromhex(model_hash) in entry and p["tree_size"] == ledger["size"]
    assert p["root"] == ledger["root"] and p["root_source"] == "checkpoint"
    leaf = hashlib.sha256(b"\x00" + entry).digest()
    assert leaf.hex() == p["leaf_hash"]
    verify_inclusion(
        index,
        ledger["size"],
        leaf,
        [bytes.fromhex(h) for h in p["audit_path"]],
        bytes.fromhex(ledger["root"]),
    )
    r = client.get(f"/api/proof/{ledger['size']}")
    assert r.status_code == 404 and "no entry" in r.json()["error"]
    assert client.get("/api/proof/1?size=999").status_code == 404
    assert client.get("/api/proof/x").status_code == 422


def test_page_is_self_contained_and_locked_down(quick_demo):
    client = TestClient(create_app(quick_demo))
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    for f in ("index.html", "app.js", "style.css"):
        text = (STATIC / f).read_text()
        assert not re.search(r"https?://|//cdn|@import|url\(", text), f"{f} refers to the network"
        assert client.get(f"/static/{f}").status_code == 200
    # The interactive API docs would load scripts from a CDN: they are off.
    assert client.get("/docs").status_code == 404
    assert client.get("/api/summary").headers["cache-control"] == "no-store"


def test_tampered_checkpoint_is_reported_not_trusted(quick_demo, tmp_path):
    demo = copy_demo(quick_demo, tmp_path)
    cp = demo / "ledger" / "checkpoint"
    honest = cp.read_text()
    origin, size, _root, rest = honest.split("\n", 3)
    forged = base64.b64encode(bytes(32)).decode()
    cp.write_text("\n".join((origin, size, forged, rest)))
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "failed"
    assert snap["checkpoint"]["verified"] is False
    assert snap["checkpoint"]["log_signature"]["ok"] is False
    assert "does not verify" in snap["checkpoint"]["error"]
    assert checks(snap)["checkpoint signatures"] is False
    # Nothing is claimed included under a checkpoint that failed.
    assert snap["models"] and all(m["server_inclusion"]["ok"] is None for m in snap["models"])

    # Cosignatures below the quorum: the log's signature alone is not enough.
    lines = honest.split("\n")
    witnesses = sorted({ln.split(" ")[1] for ln in lines if ".witness." in ln})
    dropped = [ln for ln in lines if not any(f" {w} " in ln for w in witnesses[:2])]
    cp.write_text("\n".join(dropped))
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "failed"
    assert snap["checkpoint"]["log_signature"]["ok"] is True
    assert snap["checkpoint"]["valid_cosignatures"] == 2
    assert "2 valid witness cosignatures, policy requires 3" in snap["checkpoint"]["error"]

    cp.write_text("not a checkpoint")
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "failed" and "malformed checkpoint" in snap["checkpoint"]["error"]


def test_flipped_leaf_fails_inclusion(quick_demo, tmp_path):
    demo = copy_demo(quick_demo, tmp_path)
    ledger = read_ledger(demo)
    index, _ = ledger["models"][3]
    db = sqlite3.connect(demo / "ledger" / "log.db")
    (data,) = db.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
    flipped = bytes(data[:-1]) + bytes([data[-1] ^ 0x01])  # the last byte of the model hash
    db.execute("UPDATE entries SET data = ? WHERE idx = ?", (flipped, index))
    db.commit()
    db.close()
    client = TestClient(create_app(demo))
    snap = summary(client)
    assert snap["verdict"] == "failed"
    assert snap["log"]["ok"] is False and "tampered" in snap["log"]["error"]
    status = {m["index"]: m["server_inclusion"]["ok"] for m in snap["models"]}
    assert status.pop(index) is False and all(status.values())
    # The proof the API serves for it does not lead to the checkpoint's root.
    p = client.get(f"/api/proof/{index}").json()
    leaf = hashlib.sha256(b"\x00" + bytes.fromhex(p["entry"])).digest()
    with pytest.raises(RootMismatchError):
        verify_inclusion(
            index,
            p["tree_size"],
            leaf,
            [bytes.fromhex(h) for h in p["audit_path"]],
            bytes.fromhex(ledger["root"]),
        )


def test_missing_log_is_reported_and_never_created(quick_demo, tmp_path):
    demo = copy_demo(quick_demo, tmp_path)
    (demo / "ledger" / "log.db").unlink()
    client = TestClient(create_app(demo))
    snap = summary(client)
    assert snap["verdict"] == "unverified"
    assert snap["log"]["present"] is False and "no log at" in snap["log"]["error"]
    assert snap["models"] == [] and snap["rounds"] == []
    r = client.get("/api/proof/0")
    assert r.status_code == 503 and "no log at" in r.json()["error"]
    assert not (demo / "ledger" / "log.db").exists()


def test_corrupt_log_is_reported(quick_demo, tmp_path):
    demo = copy_demo(quick_demo, tmp_path)
    (demo / "ledger" / "log.db").write_bytes(b"this is not SQLite" * 100)
    client = TestClient(create_app(demo))
    snap = summary(client)
    assert snap["verdict"] == "failed"
    assert "not a usable log file" in snap["log"]["error"]
    assert checks(snap)["log entries"] is False
    assert client.get("/api/proof/0").status_code == 503


def test_missing_or_broken_metrics_leave_the_ledger_verified(quick_demo, tmp_path):
    demo = copy_demo(quick_demo, tmp_path)
    (demo / "metrics.json").unlink()
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "verified"
    assert snap["metrics"]["present"] is False and "no metrics.json" in snap["metrics"]["error"]
    assert snap["intel"] is None and snap["under_attack"] is None
    assert all(m["reputation"] is None for m in snap["members"])
    assert len(snap["rounds"]) == 12 and snap["rounds"][0]["f1"] is None
    (demo / "metrics.json").write_text("{truncated")
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "verified" and "unreadable" in snap["metrics"]["error"]
    # metrics.json is free-form: odd shapes are shown as absent, never a server error.
    odd = {
        "federated": [],
        "config": "x",
        "dataset": 3,
        "under_attack": {"runs": [1]},
        "collective_defence": "none",
    }
    (demo / "metrics.json").write_text(json.dumps(odd))
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "verified" and snap["intel"] is None
    assert snap["under_attack"]["runs"] == []


def test_anchor_record_must_match_the_log_and_the_trust(quick_demo, tmp_path):
    demo = copy_demo(quick_demo, tmp_path)
    path = demo / "ledger" / "anchor.json"
    honest = json.loads(path.read_text())
    forged = json.loads(path.read_text())
    forged["anchored"][0]["root"] = "00" * 32
    path.write_text(json.dumps(forged))
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "failed" and snap["anchor"]["consistent"] is False
    assert [r["matches_log"] for r in snap["anchor"]["records"]].count(False) == 1
    forged = dict(honest, contract="0x" + "11" * 20)
    path.write_text(json.dumps(forged))
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "failed" and snap["anchor"]["contract_matches_trust"] is False
    assert "another contract" in snap["anchor"]["detail"]
    path.unlink()  # the consortium anchors, so a missing record is a failure, not a pass
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "failed" and "no anchor record" in checks_detail(snap)


def test_without_a_pinned_trust_file_nothing_is_verified(quick_demo, tmp_path):
    demo = copy_demo(quick_demo, tmp_path)
    (demo / "trust.json").unlink()  # ledger/trust.json, the operator's claim, is still there
    snap = summary(TestClient(create_app(demo)))
    assert snap["verdict"] == "unverified"
    assert checks(snap)["pinned trust"] is None
    assert snap["checkpoint"]["verified"] is False
    assert all(m["server_inclusion"]["ok"] is None for m in snap["models"])
    # A trust file of another consortium does not verify this log.
    other = LiveLog(tmp_path / "other")
    other.add_round()
    snap = summary(TestClient(create_app(demo, trust=other.dir / "trust.json")))
    assert snap["verdict"] == "failed" and "expected" in snap["checkpoint"]["error"]


def test_growing_log_and_rewritten_history(tmp_path):
    live = LiveLog(tmp_path / "live")
    client = TestClient(create_app(live.dir))
    snap = summary(client)
    assert snap["verdict"] == "unverified" and snap["checkpoint"]["present"] is False
    live.add_round()
    assert summary(client)["verdict"] == "verified"
    live.add_round()
    live.trail.append(
        Incident(
            round=2,
            member="member-03",
            kind="protocol-violation",
            detail="<script>alert(1)</script>",
            evidence_hash=digest(1),
        )
    )
    snap = summary(client)
    assert snap["verdict"] == "verified" and len(snap["models"]) == 2
    assert snap["checkpoint"]["consistency"]["ok"] is True
    # The incident was appended after the checkpoint: shown, but as pending.
    assert snap["log"]["pending"] == 1 and snap["incidents"][0]["pending"] is True

    # The operator, with the same keys, presents another history: every signature verifies,
    # but it does not extend what this portal saw.
    size = snap["checkpoint"]["size"]
    live.trail.close()
    fork = LogStore(tmp_path / "fork.db")
    fork.append_batch(
        codec.encode(ModelPromoted(version=k, model_hash=digest("fork", k)))
        for k in range(size + 1)
    )
    log = TransparencyLog(fork, live.trail.origin, live.trail.log.signer)
    note = log.checkpoint()
    verifier = {live.trail.origin: live.trail.log.signer.verifier()}
    for w in live.witnesses.witnesses.values():
        note = Witness(w.cosigner, verifier).add_checkpoint(0, [], note, live.clock + 1)
    fork.close()
    shutil.copy(tmp_path / "fork.db", live.dir / "ledger" / "log.db")
    (live.dir / "ledger" / "checkpoint").write_text(note.format())
    snap = summary(client)
    assert checks(snap)["checkpoint signatures"] is True
    assert checks(snap)["consistency with last seen"] is False
    assert snap["verdict"] == "failed"
    assert "rewritten history" in snap["checkpoint"]["consistency"]["detail"]


# --- the command line -------------------------------------------------------------------------
def test_cli_portal_help_and_bad_directory(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli_app, ["portal", "serve", "--help"])
    assert r.exit_code == 0 and "--dir" in r.output and "--port" in r.output
    r = runner.invoke(cli_app, ["portal", "serve", "--dir", str(tmp_path)])
    text = " ".join(r.output.split())  # the console wraps long lines
    assert r.exit_code == 2
    assert "PortalError" in text and "is not a demo output directory" in text
    assert "Traceback" not in text
    r = runner.invoke(cli_app, ["portal", "serve", "--dir", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such directory" in " ".join(r.output.split())
    r = runner.invoke(cli_app, ["portal", "serve", "--dir", str(tmp_path), "--trust", "x.json"])
    assert r.exit_code == 2 and "no trust file" in r.output
    with pytest.raises(PortalError):
        create_app(tmp_path)


# --- the page in a real browser ---------------------------------------------------------------
@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run the portal on a free loopback port in a thread; always shut it down."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the portal did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        try:
            yield b
        finally:
            b.close()


@contextmanager
def open_page(browser: Any, url: str) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A fresh page on ``url``, with every request URL and every page error recorded."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(url)
        yield page, requests, errors
    finally:
        context.close()


def artifacts_dir() -> Path:
    d = Path(os.environ.get("GUARDIANS_ARTIFACTS") or REPO / "out" / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def attr_all(page: Any, selector: str, name: str) -> list[str]:
    return page.locator(selector).evaluate_all(f"els => els.map(e => e.getAttribute('{name}'))")


@pytest.mark.slow
def test_browser_shows_what_the_ledger_holds(quick_demo, browser):
    ledger = read_ledger(quick_demo)
    trust = json.loads((quick_demo / "trust.json").read_text())
    anchor = json.loads((quick_demo / "ledger" / "anchor.json").read_text())
    metrics = json.loads((quick_demo / "metrics.json").read_text())
    with serve(create_app(quick_demo)) as url, open_page(browser, url) as (page, requests, errors):
        page.wait_for_selector(
            '[data-testid="inclusion-summary"][data-state="done"]', timeout=30_000
        )
        q = page.locator

        def testid(name: str) -> Any:
            return q(f'[data-testid="{name}"]')

        assert testid("verdict").get_attribute("data-value") == "verified"
        assert testid("origin").inner_text() == ledger["origin"] == trust["origin"]
        assert testid("checkpoint-size").inner_text().replace(",", "") == str(ledger["size"])
        assert testid("checkpoint-root").get_attribute("data-value") == ledger["root"]
        assert int(testid("cosignatures").get_attribute("data-valid")) >= trust["quorum"]
        assert testid("cosignatures").get_attribute("data-quorum") == str(trust["quorum"])

        # Every model version of the log, in order, each verified by the browser itself.
        shown = list(
            zip(
                attr_all(page, '[data-testid="model-row"]', "data-index"),
                attr_all(page, '[data-testid="model-row"]', "data-hash"),
                strict=True,
            )
        )
        assert [(int(i), h) for i, h in shown] == ledger["models"]
        cells = testid("model-inclusion")
        assert cells.count() == len(ledger["models"]) == 12
        for k in range(cells.count()):
            assert cells.nth(k).inner_text() == "included ✓ (verified in your browser)"
        assert (
            attr_all(page, '[data-testid="model-inclusion"] > .badge', "data-state") == ["ok"] * 12
        )
        summary_el = testid("inclusion-summary")
        assert summary_el.get_attribute("data-verified") == "12"
        assert summary_el.get_attribute("data-failed") == "0"
        proofs = [u for u in requests if "/api/proof/" in u]
        assert len(proofs) == len(ledger["models"])

        rounds = attr_all(page, '[data-testid="round-row"]', "data-round")
        assert [int(r) for r in rounds] == ledger["rounds"]
        assert testid("incident-count").inner_text() == str(len(ledger["incidents"]))
        assert testid("incident-row").count() == len(ledger["incidents"])
        assert testid("anchor-contract").get_attribute("data-value") == anchor["contract"]
        assert anchor["contract"] == trust["anchor"]["contract"]
        latest = max(anchor["anchored"], key=lambda a: a["size"])
        assert testid("anchor-size").inner_text().replace(",", "") == str(latest["size"])
        assert testid("anchor-root").get_attribute("data-value") == latest["root"]
        assert testid("anchor-match").get_attribute("data-value") == "true"

        scores = metrics["federated"]["reputation"]["scores"]
        assert testid("member-row").count() == len(scores) == 4
        for member, score in scores.items():
            cell = q(
                f'[data-testid="member-row"][data-member="{member}"] '
                '[data-testid="member-reputation"]'
            )
            assert float(cell.get_attribute("data-value")) == pytest.approx(score)
            assert cell.inner_text() == f"{score:.3f}"
        assert testid("members-count").inner_text() == "4"
        assert testid("intel-objects").inner_text() == str(
            metrics["collective_defence"]["feed_objects"]
        )
        assert q('[data-testid="attack-row"]').count() == len(metrics["under_attack"]["runs"])

        shot = artifacts_dir() / "portal.png"
        page.screenshot(path=str(shot), full_page=True)

    assert requests and all(u.startswith(url) for u in requests), requests
    assert errors == []
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


@pytest.mark.slow
def test_browser_follows_a_live_log_and_catches_tampering(tmp_path, browser):
    live = LiveLog(tmp_path / "live")
    live.add_round()
    app = create_app(live.dir, refresh_seconds=0.5)
    with serve(app) as url, open_page(browser, url) as (page, requests, errors):
        done = '[data-testid="inclusion-summary"][data-state="done"]'
        page.wait_for_selector(f'{done}[data-verified="1"]', timeout=15_000)
        assert page.locator('[data-testid="verdict"]').get_attribute("data-value") == "verified"
        assert "no metrics.json yet" in page.locator("#consortium").inner_text()

        # New rounds appear without reloading, and are verified in the browser.
        live.add_round()
        hostile = '<img src="/pwned" onerror="document.title=1">'
        live.trail.append(
            Incident(
                round=2,
                member="member-02",
                kind="protocol-violation",
                detail=hostile,
                evidence_hash=digest("evidence"),
            )
        )
        live.add_round()
        page.wait_for_selector(f'{done}[data-verified="3"]', timeout=15_000)
        assert page.locator('[data-testid="round-row"]').count() == 3
        # Ledger text is shown as text, never run as markup.
        assert hostile in page.locator('[data-testid="incident-row"]').inner_text()
        assert page.locator("#incidents img").count() == 0

        # A flipped byte in a logged model hash: the browser's own check fails.
        db = sqlite3.connect(live.dir / "ledger" / "log.db")
        index = max(int(i) for (i,) in db.execute("SELECT idx FROM entries"))
        (data,) = db.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
        db.execute(
            "UPDATE entries SET data = ? WHERE idx = ?",
            (bytes(data[:-1]) + bytes([data[-1] ^ 0x80]), index),
        )
        db.commit()
        db.close()
        bad = f'[data-testid="model-row"][data-index="{index}"] [data-state="fail"]'
        page.wait_for_selector(bad, timeout=15_000)
        assert "NOT verified" in page.locator(bad).inner_text()
        assert page.locator('[data-testid="verdict"]').get_attribute("data-value") == "failed"

        # The browser's verifier against the transparency-dev inclusion probes.
        probes = []
        for f in sorted((VECTORS / "inclusion").rglob("*.json")):
            p = json.loads(f.read_text())
            hx = lambda b64: base64.b64decode(b64 or "").hex()  # noqa: E731
            probes.append(
                {
                    "leafIdx": p["leafIdx"],
                    "treeSize": p["treeSize"],
                    "leafHash": hx(p["leafHash"]),
                    "root": hx(p["root"]),
                    "proof": [hx(x) for x in p.get("proof") or []],
                    "wantErr": p["wantErr"],
                    "name": str(f),
                }
            )
        got = page.evaluate(
            """async (probes) => Promise.all(probes.map(async (p) => {
                 try {
                   const r = await rootFromInclusion(p.leafIdx, p.treeSize,
                     hexToBytes(p.leafHash), p.proof.map(hexToBytes));
                   return sameBytes(r, hexToBytes(p.root));
                 } catch (e) { return false; }
               }))""",
            probes,
        )
        wrong = [p["name"] for p, ok in zip(probes, got, strict=True) if ok == p["wantErr"]]
        assert len(probes) > 50 and wrong == []
    live.trail.close()
    assert all(u.startswith(url) for u in requests) and errors == []
