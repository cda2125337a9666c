"""The demo report: one self-contained HTML file (inline CSS and SVG; works offline)."""

from __future__ import annotations

import html
from typing import Any

from guardians import __version__
from guardians.report import plots

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px 32px;background:#fff}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:32px 0 8px;border-bottom:1px solid #d0d7de}
.sub{color:#59636e;margin:0 0 16px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f8fa}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:8px;padding:10px 16px;min-width:180px}
.card b{display:block;font-size:24px}
figure{margin:8px 0 16px}svg{max-width:100%;height:auto}
.note{color:#59636e;font-size:13px}code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _f(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "–" if x != x else f"{x:.{digits}f}"
    return _e(x)


def _or_nan(x: float | None) -> float:
    return float("nan") if x is None else x


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}%"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(m: dict[str, Any]) -> str:
    keys = [
        ("accuracy", "accuracy"),
        ("f1", "F1"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("roc_auc", "ROC-AUC"),
        ("fpr", "false-positive rate"),
    ]
    rows = []
    for setting, name in (
        ("federated", "federated"),
        ("centralized", "centralized (pooled)"),
        ("local_only", "local-only (mean over members)"),
    ):
        d = m[setting]
        rows.append([_e(name)] + [_f(d.get(k, float("nan"))) for k, _ in keys])
    return _table(["setting"] + [n for _, n in keys], rows)


def _egress(m: dict[str, Any]) -> str:
    eg = m["egress"]
    rows = []
    for mid, p in eg["federated"]["per_member"].items():
        c = eg["centralized"]["per_member"][mid]
        fed_raw = p["raw_records_out"]
        rows.append([
            _e(mid), _e(p["records_held"]),
            f'<span class="{"ok" if fed_raw == 0 else "bad"}">{fed_raw}</span>',
            _e(f'{p["bytes_out"]:,}'),
            _e(", ".join(sorted(p["out_by_kind"]))),
            _e(c["raw_records_out"]), _e(f'{c["bytes_out"]:,}'),
        ])  # fmt: skip
    rows.append([
        "<b>all members</b>", "",
        f'<b>{eg["federated"]["raw_records"]}</b>', f'<b>{eg["federated"]["bytes_out"]:,}</b>', "",
        f'<b>{eg["centralized"]["raw_records"]}</b>', f'<b>{eg["centralized"]["bytes_out"]:,}</b>',
    ])  # fmt: skip
    return _table(
        ["member", "records held", "federated: raw records out", "federated: bytes out",
         "federated: message kinds out", "centralized: raw records out",
         "centralized: bytes out"],
        rows,
    )  # fmt: skip


def _privacy(m: dict[str, Any]) -> str:
    comp = m.get("privacy_comparison") or {}
    if not comp:
        return ""
    names = {"secagg": "secure aggregation (SecAgg+, X25519+ML-KEM-768, Ed25519+ML-DSA-65)",
             "none": "plaintext FedAvg"}  # fmt: skip
    rows = []
    for key, c in comp.items():
        share = c["protected_share_of_data_bytes"]
        rows.append([
            _e(names.get(key, key)), _f(c["accuracy"]), _f(c["f1"]),
            _pct(share) if share is not None else "–",
            _e(c["plaintext_updates_out"]), _e(f'{c["bytes_out"]:,}'), _f(c["seconds"], 1),
        ])  # fmt: skip
    return (
        "<h2>Privacy of updates</h2><p>The same federated training with each privacy method. "
        "With secure aggregation the coordinator learns only the weighted sum of the members' "
        "updates; it relays keys and encrypted shares it cannot read or forge.</p>"
        + _table(
            [
                "method",
                "accuracy",
                "F1",
                "member-data bytes masked or encrypted",
                "plaintext updates to coordinator",
                "bytes out (all members)",
                "seconds",
            ],
            rows,
        )
    )


def _proofs(m: dict[str, Any]) -> str:
    c = m["federated"].get("compute") or {}
    if not c.get("proofs"):
        return ""
    rounds = m["federated"]["per_round"]
    verified = sum(bool(r.get("verified")) for r in rounds)
    rejected = sum(len(r.get("rejected", [])) for r in rounds)
    kb = c.get("masked_input_bytes_per_member_round", 0) / 1e3
    rows = [
        ["local training (context)", _f(c["train_s_per_member_round"], 3), "per member per round"],
        ["encode, commit and prove", _f(_or_nan(c.get("contribution_s_per_member_round")), 3),
         "per member per round, while the keys are exchanged"],
        ["prover masks for the next proof",
         _f(_or_nan(c.get("prover_masks_s_per_member_round")), 3),
         "per member per round, while the coordinator verifies"],
        ["mask", _f(c["masked_input_s_per_member_round"], 3), "per member per round"],
        ["check the aggregate opening", _f(c["opening_check_s_per_member_round"], 3),
         "per member per round"],
        ["verify every proof (one batch)", _f(c["verify_s_per_round"], 3),
         "coordinator, per round"],
        ["unmask and check the opening", _f(c["finish_s_per_round"], 3), "coordinator, per round"],
    ]  # fmt: skip
    return (
        "<h2>Contribution proofs</h2><p>Each member commits to its quantized update "
        "(a vector Pedersen commitment on BLS12-381) and proves in zero knowledge that its L2 "
        f"norm is at most {_e(c['norm_bound'])} per unit of weight; the coordinator verifies "
        "every proof before fixing who is aggregated, and every contributor checks that the "
        "unmasked aggregate opens the product of the signed commitments, so a coordinator that "
        f"lies about the sum is caught. {_e(c['params'])} parameters; "
        f"{kb:,.0f} kB sent per "
        f"member per round (masked words, commitment, proof). {verified} of {len(rounds)} "
        f"aggregates verified; {rejected} proofs rejected.</p>"
        + _table(["step", "seconds", "who"], rows)
    )


def _attacks(m: dict[str, Any]) -> str:
    ua = m.get("under_attack")
    if not ua:
        return ""
    r = ua["runs"]
    bad = [ua["malicious"]["backdoor"], *ua["malicious"]["sybil"]]
    names = {
        "clean": "FedAvg, honest members only",
        "fedavg": "FedAvg, with the attackers",
        "defended": "defended (Multi-Krum, monitoring, quarantine), with the attackers",
    }
    rows = []
    for key, run in r.items():
        q = run.get("quarantined", {})
        caught = ", ".join(f"{x} (round {q[x]})" for x in bad if x in q) or "–"
        wrong = ", ".join(f"{x} (round {q[x]})" for x in q if x not in bad) or "–"
        rows.append([_e(names[key]), _f(run["f1"]), _pct(run["backdoor_success"]), _e(caught),
                     _e(wrong), _e(run["honest_rounds_kept_out"])])  # fmt: skip
    trig = ", ".join(f"{_e(k)} = {_e(v)}" for k, v in ua["trigger"].items())
    return (
        "<h2>Under attack</h2><p>The same honest members plus three malicious identities: "
        f"{_e(ua['scenario'])} (trigger: {trig}). Malicious: {_e(', '.join(bad))}. These runs "
        "use plaintext updates, because Multi-Krum and the monitor must see each update; under "
        "secure aggregation only the proven norm bound applies.</p>"
        + _table(
            [
                "setting",
                "F1",
                "backdoor success",
                "malicious quarantined",
                "honest quarantined",
                "honest rounds kept out (mean)",
            ],
            rows,
        )
    )


def _collective(m: dict[str, Any]) -> str:
    cd = m.get("collective_defence")
    if not cd:
        return ""
    rows = [
        ["detection of the new family at members that never saw it",
         _pct(cd["unseen_family_detection_before"]), _pct(cd["unseen_family_detection_after"])],
        ["false positives on normal traffic", _pct(cd["normal_fpr_before"]),
         _pct(cd["normal_fpr_after"])],
    ]  # fmt: skip
    lat = [["Guardians (long-poll on the consortium feed)", _f(cd["p50_ms"], 1),
            _f(cd["p99_ms"], 1)],
           [f"hub polled every {_e(cd['hub_interval_s'])} s", _f(cd["hub_p50_ms"], 1),
            _f(cd["hub_p99_ms"], 1)]]  # fmt: skip
    return (
        "<h2>Collective defence</h2><p>A member sees a new attack family "
        f"(<b>{_e(cd['family'])}</b>, absent from every member's training data), derives a flow "
        "signature from what it saw and shares it as an anonymized STIX 2.1 indicator over "
        "TAXII 2.1; every other member applies it at once. Signature: "
        f"<code>{_e(cd['pattern'])}</code>. Shared feed anonymized: "
        f"{_pct(cd['anonymized_share'])}.</p>"
        + _table(["", "before sharing", "after sharing"], rows)
        + _table(["propagation to the last member", "p50 (ms)", "p99 (ms)"], lat)
    )


def _robustness(res: dict[str, Any] | None) -> str:
    if not res:
        return ""
    st = res.get("setting", {})
    return (
        "<h2>Robustness matrix</h2><p>From <code>"
        + _e(res.get("command", "guardians bench robustness"))
        + f"</code>: {_e(st.get('members', '?'))} non-IID members, {_e(st.get('rounds', '?'))} "
        "rounds per cell; left, F1 points lost against each defence's clean run; right, backdoor "
        "success.</p><figure>" + plots.robustness_heatmap(res) + "</figure>"
    )


def _ledger(m: dict[str, Any]) -> str:
    led = m["federated"].get("ledger")
    if not led:
        return ""
    verdict = '<span class="ok">PASS</span>' if led["verdict"] == "PASS" else (
        '<span class="bad">FAIL</span>')  # fmt: skip
    ok, bad = '<span class="ok">ok</span>', '<span class="bad">failed</span>'
    rows = [[_e(c["check"]), ok if c["ok"] else bad, _e(c["detail"])] for c in led["checks"]]
    kinds = ", ".join(f"{_e(k)}: {_e(v)}" for k, v in led["entries_by_kind"].items())
    return (
        "<h2>Audit ledger</h2><p>Every round and model version is appended to a transparency "
        "log (RFC 9162 Merkle tree in SQLite); after each round the log signs a checkpoint "
        "and every member's witness cosigns it (Ed25519 and ML-DSA-44) after checking it "
        f"extends what it saw before; members take turns anchoring each checkpoint on Ethereum "
        f"({_e(led.get('anchors', 0))} anchors, contract {_e(led.get('contract', '–'))} on the "
        "embedded EVM). "
        f"Log size: {_e(led['size'])} entries ({kinds}). "
        f"Verdict of <code>guardians audit verify --log {_e(led['path'])} --trust …</code> "
        f"with the consortium's genesis trust: {verdict}.</p>"
        + _table(["check", "result", "detail"], rows)
        + f"<p class='note'>Latest checkpoint:</p><pre>{_e(led['checkpoint'])}</pre>"
    )


def _members(m: dict[str, Any]) -> str:
    unseen = m.get("unseen_families", {}).get("per_member", {})
    rows = []
    for p in m["partition"]["members"]:
        mid = p["id"]
        lo = m["local_only"]["per_member"][mid]
        u = unseen.get(mid)
        rows.append([
            _e(mid), _e(p["records"]), _e(", ".join(p["groups_seen"])),
            _f(lo["f1"]), _f(m["federated"]["f1"]),
            _e(", ".join(u["families"])) if u else "–",
            _pct(u["local_only"]) if u else "–", _pct(u["federated"]) if u else "–",
        ])  # fmt: skip
    return _table(
        ["member", "records", "classes / families seen", "F1 alone", "F1 federated",
         "never saw", "detected alone", "detected federated"],
        rows,
    )  # fmt: skip


def _scorecard(sc: dict[str, Any]) -> str:
    rows = []
    for r in sc["rows"]:
        verdict = (
            '<span class="ok">met</span>'
            if r["meets_claim"]
            else '<span class="bad">not met</span>'
        )
        rows.append([
            _e(r["claim"]), _e(r["claimed"]),
            f'{_e(r["measured"])} <span class="note">{_e(r["unit"])}'
            + (f'; {r["absolute_change_points"]:+} points' if "absolute_change_points" in r else "")
            + "</span>",
            _e(r["ours"]),
            f'{_e(r["baseline"])} <span class="note">({_e(r["baseline_name"])})</span>',
            verdict, f'<span class="note">{_e(r["method"])}</span>',
        ])  # fmt: skip
    pending = "".join(
        f"<li>{_e(p['claimed'])} — measured once {_e(p['needs'])} is in place</li>"
        for p in sc.get("pending", [])
    )
    return _table(
        ["claim", "claimed", "measured", "ours", "baseline", "verdict", "how measured"], rows
    ) + (f'<p class="note">Not measured yet:</p><ul class="note">{pending}</ul>' if pending else "")


def render_report(
    main: dict[str, Any],
    scorecard: dict[str, Any],
    wdbc: dict[str, Any] | None = None,
    command: str = "",
    robustness: dict[str, Any] | None = None,
) -> str:
    ds = main["dataset"]
    cfg = main["config"]
    fed, cen, loc = main["federated"], main["centralized"], main["local_only"]
    unseen = main.get("unseen_families", {}).get("mean", {})
    cards = [
        ("federated F1", _f(fed["f1"], 3)),
        ("centralized F1", _f(cen["f1"], 3)),
        ("local-only F1 (mean)", _f(loc["f1"], 3)),
        ("raw records out (federated)", _e(main["egress"]["federated"]["raw_records"])),
    ]
    if unseen:
        cards.append(
            (
                "unseen families detected",
                f"{_pct(unseen['local_only'])} → {_pct(unseen['federated'])}",
            )
        )
    cards_html = "".join(f'<div class="card">{_e(k)}<b>{v}</b></div>' for k, v in cards)
    wdbc_html = ""
    if wdbc is not None:
        wdbc_html = (
            "<h2>Healthcare: breast-cancer diagnosis (WDBC)</h2>"
            f"<p>{_e(wdbc['config']['members'])} hospitals, {_e(wdbc['partition']['scheme'])} "
            f"partition, {_e(wdbc['model'])}, {_e(wdbc['config']['rounds'])} rounds; "
            f"{_e(wdbc['dataset']['test_records'])} held-out patients.</p>" + _summary(wdbc)
        )
    novel = fed.get("novel_attacks")
    novel_html = (
        f"<p>Attack types in the test set that never occur in training "
        f"({_e(', '.join(novel['types']))}): {_e(novel['records'])} records; detected "
        f"{_pct(novel['detection_rate'])} federated, "
        f"{_pct(cen['novel_attacks']['detection_rate'])} centralized.</p>"
        if novel
        else ""
    )
    incidents = fed.get("incidents", [])
    incidents_html = (
        "<h2>Incidents</h2>"
        + _table(
            ["round", "member", "error"],
            [[_e(i["round"]), _e(i["member"]), _e(i["error"])] for i in incidents],
        )
        if incidents
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Guardians report — {_e(ds["name"])}</title><style>{_CSS}</style></head>
<body><main>
<h1>Guardians consortium report</h1>
<p class="sub">{_e(cfg["members"])} members, {_e(ds["name"])} ({_e(ds["task"])} task),
{_e(main["partition"]["scheme"])} partition, {_e(main["model"])}, {_e(cfg["rounds"])} rounds of
{_e(cfg["epochs"])} local epoch(s), seed {_e(cfg["seed"])}. Guardians {_e(__version__)}.
{f"Command: <code>{_e(command)}</code>" if command else ""}</p>
<div class="cards">{cards_html}</div>

<h2>How to read this report</h2>
<p>The same model is trained three ways and scored on the same held-out test set
({_e(ds["test_records"])} records): <b>local-only</b> — each member alone on its own records;
<b>centralized</b> — every member uploads its records to one server (the "centralized AI"
baseline); <b>federated</b> — the consortium trains together and only model updates leave a
member. Every setting makes the same number of passes over each record. Positive class: attack
(or malignant). The egress table is read from the engine's meter, which records every message
crossing a member's boundary and scans it for the member's records.</p>

<h2>Detection on the test set</h2>
{_summary(main)}
<figure>{plots.f1_per_round(main)}</figure>
<figure>{plots.per_family(main)}</figure>
{novel_html}

<h2>Members: alone vs together</h2>
<figure>{plots.per_member(main)}</figure>
{_members(main)}

<h2>Data boundary (egress record)</h2>
{_egress(main)}
{_privacy(main)}
{_proofs(main)}
{_attacks(main)}
{_collective(main)}
{_robustness(robustness)}
{_ledger(main)}

{wdbc_html}

<h2>Scorecard</h2>
{_scorecard(scorecard)}
{incidents_html}

<h2>Data</h2>
<p class="note">{_e(ds["source"])}: {_e(ds["train_records"])} training records,
{_e(ds["test_records"])} test records, {_e(ds["features"])} features.
NSL-KDD: Tavallaee, Bagheri, Lu, Ghorbani, "A Detailed Analysis of the KDD CUP 99 Data Set",
IEEE CISDA 2009 (Canadian Institute for Cybersecurity, University of New Brunswick).
WDBC: Wolberg, Street, Mangasarian, UCI Machine Learning Repository.</p>
</main></body></html>
"""
