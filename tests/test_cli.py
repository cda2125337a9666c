"""The `guardians` command: the quick demo end to end, and clear failures on bad input."""

import json

import pytest
from typer.testing import CliRunner

from guardians.cli import app

runner = CliRunner()


def test_quick_demo_writes_report_metrics_and_scorecard(quick_demo):
    metrics = json.loads((quick_demo / "metrics.json").read_text())
    for key in ("federated", "centralized", "local_only"):
        assert {"accuracy", "f1"} <= set(metrics[key])
    assert len(metrics["local_only"]["per_member"]) == 4
    eg = metrics["egress"]
    assert eg["federated"]["raw_records"] == 0
    assert eg["centralized"]["raw_records"] == metrics["dataset"]["train_records"]
    assert "wdbc" in metrics and metrics["wdbc"]["dataset"]["name"] == "wdbc"
    # Contribution proofs are on by default: every aggregate opened its commitments.
    cost = metrics["federated"]["compute"]
    assert cost["proofs"] and cost["norm_bound"] == 2.0
    assert cost["masked_input_s_per_member_round"] > 0 and cost["verify_s_per_round"] > 0
    assert cost["contribution_s_per_member_round"] > 0
    assert cost["prover_masks_s_per_member_round"] > 0
    assert cost["masked_input_bytes_per_member_round"] > 32 * cost["params"]
    assert all(r["verified"] and not r["rejected"] for r in metrics["federated"]["per_round"])
    assert metrics["wdbc"]["federated"]["compute"]["proofs"]
    # Under attack: the backdoor works on FedAvg; the defence quarantines every attacker.
    ua = metrics["under_attack"]
    bad = {ua["malicious"]["backdoor"], *ua["malicious"]["sybil"]}
    assert ua["runs"]["fedavg"]["backdoor_success"] > 0.5
    defended = ua["runs"]["defended"]
    assert ua["malicious"]["backdoor"] in defended["quarantined"]
    assert not set(defended["quarantined"]) - bad  # no honest member quarantined
    rounds = metrics["config"]["rounds"]
    assert all(defended["rounds_kept_out"][m] >= rounds // 2 for m in bad)
    assert defended["backdoor_success"] < ua["runs"]["fedavg"]["backdoor_success"]
    # Collective defence: one member's signature protects the others, anonymously, fast.
    cd = metrics["collective_defence"]
    assert cd["unseen_family_detection_after"] > cd["unseen_family_detection_before"]
    assert cd["anonymized_share"] == 1.0 and cd["disclosures"] == 0 < cd["hub_disclosures"]
    assert cd["p50_ms"] < cd["hub_p50_ms"]

    card = json.loads((quick_demo / "scorecard.json").read_text())
    ids = {r["id"] for r in card["rows"]}
    assert {
        "detection_vs_local_only",
        "detection_vs_centralized",
        "raw_records_left_boundary",
        "wdbc_diagnostic_accuracy",
        "detection_under_attack",
        "latency",
        "anonymization",
        "unauthorized_disclosures",
    } <= ids
    for row in card["rows"]:
        assert {"claimed", "measured", "baseline", "method", "meets_claim"} <= set(row)
    egress_row = next(r for r in card["rows"] if r["id"] == "raw_records_left_boundary")
    assert egress_row["measured"] == 0 and egress_row["meets_claim"] is True

    html = (quick_demo / "report.html").read_text()
    assert html.startswith("<!doctype html>")
    assert html.count("<svg") >= 3
    # Self-contained: nothing fetched from anywhere.
    for fetch in ('src="http', "src='http", 'href="http', "url(http", "<link", "@import"):
        assert fetch not in html


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_unknown_dataset_is_a_clear_error(tmp_path):
    r = _run("demo", "--dataset", "kdd99", "--out", str(tmp_path))
    assert r.exit_code == 2
    assert "UnknownDatasetError" in r.output and "kdd99" in r.output


def test_csv_without_label_is_a_clear_error(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,b,y\n1,2,0\n3,4,1\n")
    r = _run("demo", "--dataset", f"csv:{f}", "--out", str(tmp_path))
    assert r.exit_code == 2 and "--label" in r.output


def test_csv_with_ragged_row_names_the_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,b,y\n1,2,0\n3,4\n")
    r = _run("demo", "--dataset", f"csv:{f}", "--label", "y", "--out", str(tmp_path))
    assert r.exit_code == 2
    assert "RaggedRowError" in r.output and "line 3" in r.output


def test_csv_dataset_runs_end_to_end(tmp_path):
    rng = __import__("numpy").random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    lines = ["f1,f2,f3,f4,f5,label"] + [
        ",".join(f"{v:.5f}" for v in row) + f",{t}" for row, t in zip(X, y, strict=True)
    ]
    f = tmp_path / "flows.csv"
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    r = _run(
        "demo",
        "--dataset",
        f"csv:{f}",
        "--label",
        "label",
        "--members",
        "4",
        "--rounds",
        "20",
        "--no-wdbc",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["features"] == 5
    assert metrics["federated"]["accuracy"] > 0.85
    assert metrics["federated"]["accuracy"] > metrics["local_only"]["accuracy"]
    assert "wdbc" not in metrics


def test_version():
    r = _run("--version")
    assert r.exit_code == 0 and "guardians" in r.output


def test_bench_secagg_against_flower_and_plaintext():
    r = _run(
        "bench", "secagg", "--clients", "8", "--params", "300", "--dropout", "0.25",
        "--vs-flower", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    for key in ("ours_s", "flower_s", "plaintext_s", "speedup_vs_flower"):
        assert res[key] > 0
    assert res["dropped"] == 2
    # Ours is exact up to fixed-point resolution; both recover the same survivors' mean.
    assert res["ours_max_abs_error"] < 1e-5
    assert res["flower_max_abs_error"] < 1e-3


def test_bench_ledger_runs_and_reports_the_anchor():
    r = _run("bench", "ledger", "--entries", "2000", "--batch", "100", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    for key in ("appends_per_s", "inclusion_proofs_per_s", "verifications_per_s"):
        assert res[key] > 0
    assert res["anchor_appends_per_s"] == 2900


def test_bench_zk_reports_the_keys_and_a_verified_round():
    r = _run(
        "bench", "zk", "--params", "256", "--params", "512", "--round-params", "600",
        "--members", "4", "--rounds", "2", "--epochs", "2", "--batch-size", "32", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["params"] == 512 and [s["params"] for s in res["sizes"]] == [256, 512]
    for key in ("prove_us_per_param", "verify_us_per_param", "proof_bytes"):
        assert res[key] > 0
    assert res["proof_bytes"] > 32 * 513  # the response vector alone
    for row in res["sizes"]:
        assert 0 < row["prove_once_update_s"] < row["prove_s"]
        assert row["prove_s"] == pytest.approx(row["prove_once_update_s"] + row["masks_s"])
    rnd = res["round"]
    assert rnd["members"] == 4 and 500 < rnd["params"] < 700
    # A ratio of two timings: reported, never asserted against a threshold.
    assert res["round_overhead_vs_plaintext"] == rnd["round_overhead_vs_plaintext"] > 0
    assert rnd["verifiable"]["steps_max_s"]["secagg/aggregate-opening"] > 0
    # Members computed their contributions during the key exchange, timed apart.
    assert rnd["verifiable"]["steps_max_s"]["idle/contribution"] > 0
    assert 0 < rnd["verifiable"]["round_ahead_s"] < rnd["verifiable"]["round_s"]
    assert rnd["verifiable"]["steps_max_s"]["idle/prover-masks"] > 0
    for mode in ("plaintext", "secagg", "verifiable"):
        assert rnd[mode]["latency_s"] >= rnd[mode]["coordinator_s"] > 0
    assert rnd["break_even_plaintext_latency_s"] == pytest.approx(rnd["proof_added_latency_s"] / 2)
    assert rnd["round_overhead_latency"] == pytest.approx(
        rnd["verifiable"]["latency_s"] / rnd["plaintext"]["latency_s"]
    )
    assert rnd["break_even_plaintext_round_s"] == pytest.approx(rnd["proof_added_s"] / 2)
    assert res["commitment_vs_plaintext_round"] > 0
    assert (rnd["epochs"], rnd["batch_size"]) == (2, 32)
    floor = rnd["msm_floor"]
    assert floor["total_s"] == pytest.approx(
        floor["commit_s"] + floor["verify_s"] + floor["opening_s"]
    )
    assert res["floor_overhead_vs_plaintext"] == rnd["floor_overhead_latency"] > 1
    assert res["anchor"]["prove_us_per_param"] == pytest.approx(60.27, abs=0.01)


def test_bench_zk_prints_its_tables():
    r = _run("bench", "zk", "--params", "256", "--round-params", "600", "--members", "4",
             "--rounds", "2")  # fmt: skip
    assert r.exit_code == 0, r.output
    for text in ("Contribution proofs", "A round: 4 members", "verifiable", "latency",
                 "Goal ≤ 3×", "Floor of this design here"):  # fmt: skip
        assert text in r.output


def test_bench_zk_refuses_silly_sizes():
    r = _run("bench", "zk", "--params", str(1 << 21), "--no-round")
    assert r.exit_code != 0 and "2^20" in r.output


def test_bench_robustness_cells_and_heatmap(tmp_path):
    r = _run(
        "bench", "robustness", "--defence", "fedavg", "--defence", "multi-krum",
        "--attack", "sign-flip", "--fraction", "0.2", "--rounds", "3", "--json",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert len(res["cells"]) == 4  # two defences × (clean + one attack)
    for c in res["cells"]:
        assert {"defence", "attack", "malicious_fraction", "f1", "backdoor_success"} <= set(c)
    hit = {c["defence"]: c for c in res["cells"] if c["attack"] == "sign-flip"}
    assert hit["fedavg"]["f1"] < hit["multi-krum"]["f1"]
    assert hit["multi-krum"]["malicious_excluded"] == 1.0
    assert "<svg" in (tmp_path / "robustness.html").read_text()
    assert json.loads((tmp_path / "robustness.json").read_text())["cells"]


def test_bench_robustness_refuses_unknown_names():
    r = _run("bench", "robustness", "--defence", "geomed")
    assert r.exit_code != 0 and "unknown defence" in r.output
    r = _run("bench", "robustness", "--fraction", "0.6")
    assert r.exit_code != 0 and "(0, 0.5)" in r.output


def test_demo_ledger_verifies_and_tampering_fails(quick_demo, tmp_path):
    import shutil
    import sqlite3

    metrics = json.loads((quick_demo / "metrics.json").read_text())
    assert metrics["federated"]["ledger"]["verdict"] == "PASS"
    assert "Audit ledger" in (quick_demo / "report.html").read_text()
    trust = str(quick_demo / "trust.json")
    r = _run("audit", "verify", "--log", str(quick_demo / "ledger"), "--trust", trust, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["model_versions_included"] == 12
    copy = tmp_path / "ledger"
    shutil.copytree(quick_demo / "ledger", copy)
    db = sqlite3.connect(copy / "log.db")
    db.execute("UPDATE entries SET data = x'00' WHERE idx = 10")
    db.commit()
    db.close()
    r = _run("audit", "verify", "--log", str(copy), "--trust", trust)
    assert r.exit_code == 1 and "NOT VERIFIED" in r.output
    # Without the pinned trust file nothing verifies, not even the honest log.
    r = _run("audit", "verify", "--log", str(quick_demo / "ledger"))
    assert r.exit_code == 1


def test_zk_attribute_commit_prove_verify(tmp_path):
    secret, proof = tmp_path / "s.json", tmp_path / "p.json"
    r = _run("zk", "commit", "--value", "25000", "--secret", str(secret))
    assert r.exit_code == 0 and len(r.output.strip()) == 64
    r = _run("zk", "prove", "--secret", str(secret), "--ge", "10000", "--member", "h3",
             "--out", str(proof))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert _run("zk", "verify", "--proof", str(proof)).exit_code == 0
    # A false statement is refused; a proof checked against another bound is invalid.
    r = _run("zk", "prove", "--secret", str(secret), "--ge", "30000", "--out", str(proof))
    assert r.exit_code == 2 and "FalseStatementError" in r.output
    d = json.loads(proof.read_text())
    d["predicate"]["ge"] = 10001
    proof.write_text(json.dumps(d))
    r = _run("zk", "verify", "--proof", str(proof))
    assert r.exit_code == 1 and "INVALID" in r.output
    proof.write_text("{not json")
    assert _run("zk", "verify", "--proof", str(proof)).exit_code == 2
    # The opening of a published commitment is never overwritten.
    before = secret.read_text()
    r = _run("zk", "commit", "--value", "1", "--secret", str(secret))
    assert r.exit_code == 2 and "exists" in r.output and secret.read_text() == before


def test_zk_verify_refuses_bounds_that_would_wrap_around_the_group_order(tmp_path):
    """A hand-made proof of "value ≥ ℓ + 5" for a commitment to 7: the range proof itself
    checks out (ℓ + 5 ≡ 5), so only the bound's own range keeps it from verifying."""
    from guardians.crypto.commit import G, commit
    from guardians.crypto.group import ORDER, Scalar
    from guardians.crypto.zk.bulletproofs import prove_range
    from guardians.crypto.zk.sigma import Context

    r = Scalar.random()
    c = commit(Scalar.of(7), r)
    low = ORDER + 5
    ctx = Context("guardians", 0, "member", f"attribute/ge/{low}/32")
    pf = prove_range(ctx, c - G * Scalar.of(low), 2, r, 32)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({
        "commitment": c.to_bytes().hex(), "predicate": {"ge": low, "le": None, "bits": 32},
        "context": {"consortium": "guardians", "round": 0, "member": "member",
                    "purpose": "attribute"},
        "proof": pf.hex(),
    }))  # fmt: skip
    r = _run("zk", "verify", "--proof", str(forged))
    flat = " ".join(r.output.split())
    assert r.exit_code == 2 and "lower bound must be an integer in [0, 2^32)" in flat
    assert "VALID" not in r.output


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["context"].update(round="0"), "'round' must be int"),
        (lambda d: d["context"].update(round=-1), "round must be in"),
        (lambda d: d["context"].update(member=None), "'member' must be str"),
        (lambda d: d["predicate"].update(ge=10.0), "'ge' must be int"),
        (lambda d: d["predicate"].update(bits=7), "bits must be one of"),
        (lambda d: d["context"].update(extra=1), "the context names"),
        (lambda d: d.update(proof="zz"), "non-hexadecimal"),
    ],
)
def test_zk_verify_names_what_is_malformed(tmp_path, change, needle):
    secret, proof = tmp_path / "s.json", tmp_path / "p.json"
    assert _run("zk", "commit", "--value", "20", "--secret", str(secret)).exit_code == 0
    r = _run("zk", "prove", "--secret", str(secret), "--ge", "18", "--bits", "8",
             "--out", str(proof))  # fmt: skip
    assert r.exit_code == 0, r.output
    d = json.loads(proof.read_text())
    change(d)
    proof.write_text(json.dumps(d))
    r = _run("zk", "verify", "--proof", str(proof))
    flat = " ".join(r.output.split())
    assert r.exit_code == 2 and "malformed proof file" in flat and needle in flat
    assert "Traceback" not in r.output


def test_zk_prove_names_what_is_wrong_with_the_opening(tmp_path):
    secret, proof = tmp_path / "s.json", tmp_path / "p.json"
    for text, needle in (("[1, 2]", "has no 'commitment'"),
                         ('{"value": Infinity}', "not valid JSON"),
                         ("", "not valid JSON")):  # fmt: skip
        secret.write_text(text)
        r = _run("zk", "prove", "--secret", str(secret), "--ge", "1", "--out", str(proof))
        assert r.exit_code == 2 and needle in " ".join(r.output.split()), r.output
    assert _run("zk", "commit", "--value", "5", "--secret", str(tmp_path / "t.json")).exit_code == 0
    r = _run("zk", "prove", "--secret", str(tmp_path / "t.json"), "--ge", "1",
             "--out", str(tmp_path))  # fmt: skip
    assert r.exit_code == 2 and "cannot write" in " ".join(r.output.split())


def test_demo_refuses_an_incoherent_rule_before_training():
    r = _run("demo", "--rule", "krum", "--assumed-malicious", "1", "--quick", "--no-wdbc")
    assert r.exit_code == 2 and "sees only their sum" in r.output
    r = _run("demo", "--rule", "geomed", "--privacy", "none", "--quick")
    assert r.exit_code == 2 and "unknown aggregation rule" in r.output


def test_demo_refuses_a_file_that_is_not_a_robustness_result(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text('{"rows": []}')
    r = _run("demo", "--robustness", str(bad), "--quick", "--no-wdbc", "--out", str(tmp_path))
    assert r.exit_code == 2 and "not a robustness result" in " ".join(r.output.split())


def test_report_embeds_a_robustness_heatmap():
    from guardians.report.html import _robustness

    cells = [
        {"defence": d, "attack": a, "malicious_fraction": f, "f1_drop_points": x,
         "backdoor_success": b}
        for d, a, f, x, b in [("fedavg", "none", 0.0, 0.0, 0.0),
                              ("fedavg", "backdoor", 0.2, 1.0, 1.0),
                              ("default", "none", 0.0, 0.0, 0.0),
                              ("default", "backdoor", 0.2, 0.1, 0.02)]
    ]  # fmt: skip
    html = _robustness({"cells": cells, "command": "guardians bench robustness",
                        "setting": {"members": 10, "rounds": 20}})  # fmt: skip
    assert "<svg" in html and "Robustness matrix" in html
    assert _robustness(None) == ""


def test_bench_zk_refuses_a_round_smaller_than_any_model_and_negative_seeds():
    r = _run("bench", "zk", "--params", "256", "--round-params", "16")
    assert r.exit_code == 2 and "smallest MLP on NSL-KDD has" in " ".join(r.output.split())
    assert _run("bench", "zk", "--params", "256", "--no-round", "--seed", "-1").exit_code == 2
