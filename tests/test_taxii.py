"""The TAXII 2.1 server over real HTTP: interop with the OASIS `taxii2-client`, refusal of bad
input (nothing stored), and pushing to / pulling from the OASIS reference server `medallion`."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
import stix2
import uvicorn
from taxii2client.v21 import Server, as_pages

from guardians.crypto.group import Point, Scalar
from guardians.crypto.sign import SigningKey
from guardians.engine.ports import free_port
from guardians.engine.taxii import TAXII, taxii_app
from guardians.intel import auth
from guardians.intel.anonymize import Anonymizer, EpochKey
from guardians.intel.stix import Detection, bundle, parse_bundle
from guardians.intel.store import IntelStore

CONSORTIUM = stix2.Identity(name="Guardians consortium", identity_class="organization")
USER, PASSWORD = "member-01", "correct horse battery staple"


def _shared(n: int) -> list:
    key = EpochKey.derive(os.urandom(32), 1)
    out = []
    for i in range(n):
        d = Detection(family=f"family-{i}", protocol="tcp", dst_port=1000 + i,
                      src_ip=f"93.184.216.{i + 1}", count=i + 1,
                      first_seen=datetime(2026, 11, 22, 8, i, tzinfo=UTC))  # fmt: skip
        out += Anonymizer(CONSORTIUM, key).share(d)
    return out


@contextlib.contextmanager
def _serving(app):
    """Run ``app`` with uvicorn on a free loopback port; yield its base URL."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        th.join(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = IntelStore(tmp_path_factory.mktemp("intel") / "intel.db")
    cid = store.create_collection("indicators", "anonymized consortium indicators")
    app = taxii_app(store, users={USER: PASSWORD}, max_content_length=200_000)
    with _serving(app) as base:
        yield base, cid, store


def test_taxii2_client_round_trip(server):
    base, cid, _ = server
    api = Server(f"{base}/taxii2/", user=USER, password=PASSWORD).api_roots[0]
    assert api.versions == [TAXII]
    (coll,) = [c for c in api.collections if c.id == cid]
    objs = _shared(3)
    status = coll.add_objects(bundle(objs))
    assert status.status == "complete" and status.success_count == 6
    got = coll.get_objects()
    assert [o["id"] for o in got["objects"]] == [o["id"] for o in objs]
    parse_bundle(json.dumps({"type": "bundle", "id": "bundle--" + "0" * 8 + "-0000-4000-8000-"
                             + "0" * 12, "objects": got["objects"]}))  # fmt: skip
    one = coll.get_object(objs[2]["id"])
    assert one["objects"][0]["id"] == objs[2]["id"]
    man = coll.get_manifest()
    assert {m["id"] for m in man["objects"]} == {o["id"] for o in objs}
    pages = [p["objects"] for p in as_pages(coll.get_objects, per_request=2)]
    assert [len(p) for p in pages] == [2, 2, 2]
    later = coll.get_objects(added_after=man["objects"][-1]["date_added"])
    assert later.get("objects", []) == []
    only = coll.get_objects(type="sighting")
    assert {o["type"] for o in only["objects"]} == {"sighting"}
    assert api.get_status(status.id).status == "complete"


def _auth() -> dict[str, str]:
    tok = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {tok}", "Accept": TAXII, "Content-Type": TAXII}


def test_bad_requests_get_taxii_errors_and_store_nothing(server):
    base, cid, store = server
    url = f"{base}/api/collections/{cid}/objects/"
    before = len(store.page(cid, limit=1000).objects)
    good = json.loads(bundle(_shared(1)))["objects"]
    cases = [
        (b"{not json", 400, "invalid STIX"),
        (json.dumps({"objects": [*good, {"type": "indicator", "spec_version": "2.1"}]}).encode(),
         400, "invalid"),
        (json.dumps({"objects": []}).encode(), 400, "no objects"),
        (b"x" * 200_001, 413, "too large"),
    ]  # fmt: skip
    for body, code, text in cases:
        r = httpx.post(url, content=body, headers=_auth())
        assert r.status_code == code, (code, r.text)
        assert r.headers["content-type"].startswith("application/taxii+json")
        assert text in r.json()["title"] + r.json()["description"]
    assert len(store.page(cid, limit=1000).objects) == before  # the good object was not kept
    h = _auth()
    assert httpx.get(f"{base}/api/collections/nope/objects/", headers=h).status_code == 404
    assert httpx.get(f"{base}/other/", headers=h).status_code == 404
    assert httpx.get(f"{base}/api/status/nope/", headers=h).status_code == 404
    assert httpx.get(f"{base}/api/", headers={**h, "Accept": "text/html"}).status_code == 406
    assert httpx.post(url, content=b"{}", headers={**h, "Content-Type": "application/json"}
                      ).status_code == 415  # fmt: skip
    assert httpx.get(f"{base}/taxii2/", headers={"Accept": TAXII}).status_code == 401
    bad = {**h, "Authorization": "Basic " + base64.b64encode(b"member-01:wrong").decode()}
    assert httpx.get(f"{base}/taxii2/", headers=bad).status_code == 401
    r = httpx.get(f"{base}/api/collections/{cid}/objects/?limit=many", headers=h)
    assert r.status_code == 400


def test_push_to_and_pull_from_medallion(tmp_path):
    """The reference TAXII 2.1 server accepts what we share, and we read back valid STIX."""
    import medallion
    from werkzeug.serving import make_server

    col = "472c94ae-3113-4e3e-a4dd-a9f4ac7471d4"
    port = free_port()
    data = {
        "/discovery": {"title": "medallion", "default": f"http://127.0.0.1:{port}/api1/",
                       "api_roots": [f"http://127.0.0.1:{port}/api1/"]},
        "api1": {"information": {"title": "api1", "versions": [TAXII],
                                 "max_content_length": 1_000_000},
                 "status": [],
                 "collections": [{"id": col, "title": "shared", "can_read": True,
                                  "can_write": True, "media_types": [], "objects": [],
                                  "manifest": []}]},
    }  # fmt: skip
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    app = medallion.application_instance
    medallion.set_config(app, "users", {"users": {"guardians": "pw"}})
    medallion.set_config(app, "taxii", {"taxii": {"max_page_size": 100}})
    medallion.set_config(app, "backend", {"backend": {
        "module": "medallion.backends.memory_backend", "module_class": "MemoryBackend",
        "filename": str(path)}})  # fmt: skip
    if "objects" not in app.blueprints:
        medallion.register_blueprints(app)
    srv = make_server("127.0.0.1", port, app)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        api = Server(f"http://127.0.0.1:{port}/taxii2/", user="guardians",
                     password="pw").api_roots[0]  # fmt: skip
        coll = api.collections[0]
        objs = _shared(2)
        status = coll.add_objects(bundle(objs))
        assert status.success_count == 4
        back = coll.get_objects()["objects"]
        assert {o["id"] for o in back} == {o["id"] for o in objs}
        wrapped = {"type": "bundle", "id": "bundle--6f5b1c9e-2b7c-4d36-9d7e-0d8a4b6f1e11",
                   "objects": back}  # fmt: skip
        assert len(parse_bundle(json.dumps(wrapped))) == 4
    finally:
        srv.shutdown()
        th.join(timeout=5)


# --- authenticated sharing ------------------------------------------------------------------
NAMES = ("member-01", "member-02", "member-03")
KEYS = {m: SigningKey.generate() for m in NAMES}
DIRECTORY = {m: k.verify_key for m, k in KEYS.items()}
RING_SECRETS = {m: Scalar.random() for m in NAMES}
RING = [Point.base_mul(RING_SECRETS[m]) for m in NAMES]


def _authenticate(obj: dict) -> tuple[str, str]:
    return auth.verify(obj, "guardians", DIRECTORY, RING)


@pytest.fixture(scope="module")
def authed(tmp_path_factory):
    store = IntelStore(tmp_path_factory.mktemp("intel-auth") / "intel.db")
    cid = store.create_collection("indicators")
    app = taxii_app(store, users={USER: PASSWORD}, authenticate=_authenticate, per_source=3)
    with _serving(app) as base:
        yield f"{base}/api/collections/{cid}/objects/", store, cid


def _dicts(n: int) -> list[dict]:
    return [json.loads(o.serialize()) for o in _shared(n)]


def _post(url: str, objs: list[dict]) -> httpx.Response:
    return httpx.post(url, content=json.dumps({"objects": objs}), headers=_auth())


def test_signed_and_anonymous_objects_are_accepted(authed):
    url, store, cid = authed
    objs = _dicts(1)
    signed = [auth.sign(o, "guardians", "member-02", KEYS["member-02"]) for o in objs]
    assert auth.verify(signed[0], "guardians", DIRECTORY, RING) == ("signed", "member-02")
    r = _post(url, signed)
    assert r.status_code == 202, r.text
    anon = [auth.sign_anonymously(o, "guardians", RING, 9, RING_SECRETS["member-03"])
            for o in _dicts(1)]  # fmt: skip
    kind, _ = auth.verify(anon[0], "guardians", DIRECTORY, RING)
    assert kind == "anonymous" and "member-03" not in json.dumps(anon)
    assert _post(url, anon).status_code == 202
    stored = store.page(cid, limit=100).objects
    assert any(auth.ANONYMOUS in o for o in stored) and any(auth.SIGNED in o for o in stored)


def test_unsigned_forged_replayed_and_flooding_objects_are_refused(authed):
    url, store, cid = authed
    before = len(store.page(cid, limit=1000).objects)
    objs = _dicts(1)
    r = _post(url, objs)
    assert r.status_code == 400 and "unsigned" in r.json()["description"]
    signed = auth.sign(objs[0], "guardians", "member-01", KEYS["member-01"])
    tampered = {**signed, "confidence": 5}
    r = _post(url, [tampered])
    assert r.status_code == 400 and "does not verify" in r.json()["description"]
    outsider = auth.sign(objs[0], "guardians", "mallory", SigningKey.generate())
    assert "not a consortium member" in _post(url, [outsider]).json()["description"]
    wrong_ring = auth.sign_anonymously(objs[1], "guardians", RING, 9, RING_SECRETS["member-01"])
    wrong_ring[auth.ANONYMOUS]["epoch"] = 10
    assert _post(url, [wrong_ring]).status_code == 400
    assert len(store.page(cid, limit=1000).objects) == before  # nothing of any of these kept
    assert _post(url, [signed]).status_code == 202
    r = _post(url, [signed])
    assert r.status_code == 409 and "already" in r.json()["description"]
    # One anonymous member, one epoch: at most 3 objects, however they are split.
    flood = [auth.sign_anonymously(o, "guardians", RING, 11, RING_SECRETS["member-01"])
             for o in _dicts(2)]  # fmt: skip
    assert _post(url, flood[:2]).status_code == 202
    r = _post(url, flood[2:])
    assert r.status_code == 429, r.text
    assert len(store.page(cid, limit=1000).objects) == before + 1 + 2


# --- the CLI ------------------------------------------------------------------------------
def test_cli_share_push_pull_round_trip(server, tmp_path):
    from typer.testing import CliRunner

    from guardians.cli import app

    base, cid, _ = server
    run = CliRunner().invoke
    secret = tmp_path / "secret.hex"
    secret.write_text(os.urandom(32).hex())
    dets = tmp_path / "detections.json"
    dets.write_text(json.dumps([
        {"family": "worm-y", "protocol": "tcp", "dst_port": 4444, "src_ip": "93.184.216.99",
         "dst_ip": "192.168.7.7", "domain": "files.internal", "count": 3,
         "first_seen": "2026-11-22T09:00:00+00:00"},
    ]))  # fmt: skip
    shared = tmp_path / "shared.json"
    r = run(app, ["intel", "share", str(dets), "--secret-file", str(secret), "--epoch", "3",
                  "--out", str(shared)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "anonymized share 100.0%" in r.output
    text = shared.read_text()
    assert "93.184.216.99" not in text and "192.168.7.7" not in text and "internal" not in text
    url = f"{base}/api/collections/{cid}/"
    r = run(app, ["intel", "push", str(shared), "--url", url, "--user", USER, "--password",
                  PASSWORD])  # fmt: skip
    assert r.exit_code == 0 and "2 succeeded" in r.output, r.output
    pulled = tmp_path / "pulled.json"
    r = run(app, ["intel", "pull", "--url", url, "--out", str(pulled), "--user", USER,
                  "--password", PASSWORD])  # fmt: skip
    assert r.exit_code == 0, r.output
    ids = {o["id"] for o in json.loads(pulled.read_text())["objects"]}
    assert {o["id"] for o in json.loads(text)["objects"]} <= ids
    r = run(app, ["intel", "push", str(dets), "--url", url])  # not a bundle: refused locally
    assert r.exit_code == 2 and "not a STIX bundle" in r.output
    secret.write_text("00")
    r = run(app, ["intel", "share", str(dets), "--secret-file", str(secret), "--epoch", "3",
                  "--out", str(shared)])  # fmt: skip
    assert r.exit_code == 2 and "256 bits" in r.output


def test_what_is_stored_is_what_was_signed_and_observables_replay_by_id(authed):
    url, store, cid = authed
    obj = _dicts(1)[0]
    obj["x_note"] = None  # stix2 would drop it on re-serializing: the signature must survive
    signed = auth.sign(obj, "guardians", "member-03", KEYS["member-03"])
    assert _post(url, [signed]).status_code == 202
    (stored,) = [o for o in store.page(cid, limit=1000).objects if o["id"] == obj["id"]]
    assert auth.verify(stored, "guardians", DIRECTORY, RING) == ("signed", "member-03")
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "value": "93.184.216.34",
           "id": "ipv4-addr--6f5b1c9e-2b7c-4d36-9d7e-0d8a4b6f1e12"}  # fmt: skip
    sco = auth.sign(sco, "guardians", "member-03", KEYS["member-03"])
    assert _post(url, [sco]).status_code == 202
    assert _post(url, [sco]).status_code == 409  # no created/modified: its id is its version


def test_anonymous_objects_must_be_of_a_current_epoch():
    obj = _dicts(1)[0]
    anon = auth.sign_anonymously(obj, "guardians", RING, 12, RING_SECRETS["member-02"])
    assert auth.verify(anon, "guardians", DIRECTORY, RING, epochs={11, 12})[0] == "anonymous"
    with pytest.raises(auth.IntelAuthError, match="not a current epoch"):
        auth.verify(anon, "guardians", DIRECTORY, RING, epochs={13})
    for bad in (-1, 2**70, "7", True):
        broken = {**anon, auth.ANONYMOUS: {**anon[auth.ANONYMOUS], "epoch": bad}}
        with pytest.raises(auth.IntelAuthError, match="malformed"):
            auth.verify(broken, "guardians", DIRECTORY, RING)
    # The same tag spelled differently is the same source.
    upper = {**anon, auth.ANONYMOUS: {**anon[auth.ANONYMOUS],
                                      "tag": anon[auth.ANONYMOUS]["tag"].upper()}}  # fmt: skip
    assert auth.verify(upper, "guardians", DIRECTORY, RING) == auth.verify(
        anon, "guardians", DIRECTORY, RING
    )


def test_streamed_oversize_bodies_and_odd_parameters(server):
    base, cid, _ = server
    url = f"{base}/api/collections/{cid}/objects/"
    h = _auth()

    def chunks():
        for _ in range(300):
            yield b" " * 1000  # no Content-Length: chunked, 300 kB against a 200 kB limit

    r = httpx.post(url, content=chunks(), headers=h)
    assert r.status_code == 413
    assert httpx.get(url, params={"wait": "nan"}, headers=h).status_code == 400
    assert httpx.get(url, params={"added_after": "yesterday"}, headers=h).status_code == 400
    # A timestamp without fractional seconds still compares correctly.
    r = httpx.get(url, params={"added_after": "2000-01-01T00:00:00Z"}, headers=h)
    assert r.status_code == 200 and r.json()["objects"]
