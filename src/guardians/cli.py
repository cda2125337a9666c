"""The `guardians` command line."""

from __future__ import annotations

import base64
import json
import math
import os
import shlex
import shutil
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from guardians import __version__
from guardians.cli_deploy import member_app
from guardians.errors import ConfigError, GuardiansError
from guardians.learning.data import DATASETS, TASKS
from guardians.learning.models import MODEL_KINDS
from guardians.learning.partition import SCHEMES

app = typer.Typer(
    name="guardians",
    help="Decentralized AI security: a consortium trains shared security models without "
    "pooling raw data, and measures what that buys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


def _secs(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f} s"


def _jsonable(x: Any) -> Any:
    """Strict JSON: NaN and infinities become null; numpy scalars become Python numbers."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str | bytes):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


def _fail(exc: GuardiansError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
    return typer.Exit(code=2)


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    if version:
        out.print(f"guardians {__version__}")
        raise typer.Exit()
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is None:
        out.print(ctx.get_help())
        raise typer.Exit()


@app.command()
def demo(
    members: Annotated[int, typer.Option(help="Number of consortium members.", min=1)] = 8,
    rounds: Annotated[
        int | None,
        typer.Option(
            help="Federated rounds (default: 40 for NSL-KDD, 20 for WDBC; 12 with --quick).", min=1
        ),
    ] = None,
    dataset: Annotated[
        str, typer.Option(help=f"Dataset: {' | '.join(DATASETS)} (CSV with a header row).")
    ] = "nsl-kdd",
    label: Annotated[
        str | None, typer.Option(help="Label column of a CSV dataset (integer classes).")
    ] = None,
    test_csv: Annotated[
        Path | None,
        typer.Option(help="Held-out CSV test file (same columns); default: 25% of the CSV."),
    ] = None,
    task: Annotated[
        str, typer.Option(help=f"NSL-KDD task: {' | '.join(TASKS)} (5 families).")
    ] = "binary",
    partition: Annotated[
        str | None,
        typer.Option(
            help=f"How records are split across members: {' | '.join(SCHEMES)} "
            "(default: family for NSL-KDD, dirichlet otherwise)."
        ),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(help="Dirichlet concentration (label skew) (default: 0.5; 1.0 for WDBC)."),
    ] = None,
    model: Annotated[str, typer.Option(help=f"Model: {' | '.join(MODEL_KINDS)}.")] = "mlp",
    epochs: Annotated[
        int | None, typer.Option(help="Local epochs per round (default: per dataset).", min=1)
    ] = None,
    server_momentum: Annotated[
        float | None,
        typer.Option(help="FedAvgM server momentum; 0 = plain FedAvg (default: 0.9)."),
    ] = None,
    proximal: Annotated[
        float | None,
        typer.Option(
            help="FedProx proximal weight μ for local training; 0 = off "
            "(default: 0.01 for NSL-KDD, 0 otherwise)."
        ),
    ] = None,
    privacy: Annotated[
        str,
        typer.Option(
            help="How updates leave members: secagg (secure aggregation with hybrid "
            "post-quantum keys) or none (plaintext FedAvg)."
        ),
    ] = "secagg",
    compare_privacy: Annotated[
        bool,
        typer.Option(help="Also train with the other privacy method, for the scorecard."),
    ] = True,
    proofs: Annotated[
        bool,
        typer.Option(
            help="With secagg: members prove ‖update‖₂ ≤ --norm-bound in zero knowledge and "
            "every aggregate is checked against their commitments."
        ),
    ] = True,
    norm_bound: Annotated[
        float,
        typer.Option(
            help="L2 bound on each member's update (per unit of weight) for contribution "
            "proofs; larger updates are scaled down to it before proving."
        ),
    ] = 2.0,
    attacks: Annotated[
        bool,
        typer.Option(
            help="NSL-KDD: also run the consortium with a backdoor attacker and a Sybil cluster, "
            "undefended (FedAvg) and defended (Multi-Krum, monitoring, quarantine)."
        ),
    ] = True,
    rule: Annotated[
        str,
        typer.Option(
            help="Aggregation rule of the main run: fedavg, norm-bound, median, trimmed-mean, "
            "krum, multi-krum, bulyan, fltrust (needs a root set: not in the demo), foolsgold, or "
            "norm-bound+RULE. All but fedavg and norm-bound need --privacy none."
        ),
    ] = "fedavg",
    assumed_malicious: Annotated[
        int, typer.Option(help="Malicious members Krum-style rules must tolerate (f).", min=0)
    ] = 0,
    robustness: Annotated[
        Path | None,
        typer.Option(
            help="robustness.json from `guardians bench robustness --out DIR`, to show its "
            "heatmap in the report."
        ),
    ] = None,
    intel: Annotated[
        bool,
        typer.Option(
            help="NSL-KDD: also show collective defence — one member's discovery of a new "
            "attack family shared anonymously over TAXII, with measured latency."
        ),
    ] = True,
    seed: Annotated[
        int, typer.Option(help="Seed for partitioning, initialisation, shuffling.", min=0)
    ] = 0,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for report.html, metrics.json, scorecard.json.")
    ] = Path("out/demo"),
    quick: Annotated[bool, typer.Option(help="12 rounds instead of 40; about a minute.")] = False,
    eth_rpc: Annotated[
        str | None,
        typer.Option(
            help="Ethereum JSON-RPC endpoint (node-managed accounts) for anchoring "
            "checkpoints; default: an embedded EVM in this process."
        ),
    ] = None,
    wdbc: Annotated[
        bool, typer.Option(help="Also run the healthcare study (WDBC) for the scorecard.")
    ] = True,
    engine: Annotated[
        str,
        typer.Option(
            help="Where the consortium's federated training runs: inprocess (embedded, the "
            "default) or flower (a local Flower deployment: a SuperLink with TLS and SuperNode "
            "authentication, one SuperNode and one member node per member, driven by `flwr "
            "run`; about 6 s per protocol stage). Baselines and side studies stay in process."
        ),
    ] = "inprocess",
) -> None:
    """Train an intrusion detector across a consortium on real NSL-KDD traffic, next to each
    member alone and a centralized model on pooled data; write an HTML report, metrics and the
    scorecard."""
    from guardians.report.html import render_report
    from guardians.report.scorecard import build_scorecard
    from guardians.study import config_for, run_study

    if quick and rounds is None:
        rounds = 12
    command = "guardians " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started = time.perf_counter()
    try:
        cfg = config_for(
            dataset,
            task=task,
            label=label,
            test_path=str(test_csv) if test_csv else None,
            members=members,
            partition=partition,
            alpha=alpha,
            model=model,
            rounds=rounds,
            epochs=epochs,
            server_momentum=server_momentum,
            proximal=proximal,
            privacy=privacy,
            compare_privacy=compare_privacy,
            proofs=proofs,
            norm_bound=norm_bound,
            attacks=attacks,
            rule=rule,
            assumed_malicious=assumed_malicious,
            seed=seed,
        )
        robustness_data = None
        if robustness is not None:
            try:
                robustness_data = json.loads(robustness.read_text())
                if not isinstance(robustness_data.get("cells"), list):
                    raise ValueError("no list of cells")
            except (OSError, ValueError, AttributeError) as exc:
                raise ConfigError(f"--robustness {robustness}: not a robustness result "
                                  f"({type(exc).__name__}: {exc})") from None  # fmt: skip
        wdbc_cfg = config_for("wdbc", members=members, model=model, privacy=privacy, seed=seed,
                              proofs=proofs, norm_bound=norm_bound)  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        with Progress(
            TextColumn("[bold]{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            bars: dict[str, Any] = {}

            def make_tick(prefix: str) -> Any:
                def tick(stage: str, done: int, total: int) -> None:
                    key = f"{prefix}{stage}"
                    if key not in bars:
                        bars[key] = progress.add_task(key, total=total)
                    progress.update(bars[key], completed=done, total=total)

                return tick

            ledger_dir = out_dir / "ledger"
            if ledger_dir.exists():  # each demo run founds a new consortium, with a new log
                shutil.rmtree(ledger_dir)
            main = run_study(
                cfg, progress=make_tick(f"{dataset}: "), audit_dir=str(ledger_dir),
                eth_rpc=eth_rpc, engine=engine, workdir=str((out_dir / "flower").resolve()),
            ).metrics  # fmt: skip
            wdbc_m = None
            if dataset == "wdbc":
                wdbc_m = main
            elif wdbc:
                wdbc_m = run_study(wdbc_cfg, progress=make_tick("wdbc: ")).metrics
        if intel and main["dataset"]["name"] == "nsl-kdd":
            from guardians.bench.intel import bench_intel

            with console.status("collective defence: sharing a new family's signature"):
                main["collective_defence"] = bench_intel(members=members, trials=10,
                                                         seed=seed)  # fmt: skip
        scorecard = build_scorecard(main, wdbc_m)
        metrics = dict(main)
        if wdbc_m is not None and wdbc_m is not main:
            metrics["wdbc"] = wdbc_m
        metrics["command"] = command
        if (out_dir / "ledger" / "trust.json").exists():
            # The consortium's genesis trust, to be handed to auditors out of band.
            shutil.copy(out_dir / "ledger" / "trust.json", out_dir / "trust.json")
        write_json(out_dir / "metrics.json", metrics)
        write_json(out_dir / "scorecard.json", {**scorecard, "command": command})
        (out_dir / "report.html").write_text(
            render_report(
                _jsonable(main), _jsonable(scorecard),
                _jsonable(wdbc_m) if wdbc_m is not None and wdbc_m is not main else None,
                command, robustness_data,
            ),
            encoding="utf-8",
        )  # fmt: skip
    except GuardiansError as exc:
        raise _fail(exc) from None

    table = Table(
        title=f"{main['dataset']['name']} — test set ({main['dataset']['test_records']} records)"
    )
    for col in ("setting", "accuracy", "F1", "ROC-AUC", "raw records out"):
        table.add_column(col, justify="right" if col != "setting" else "left")
    for key, name in (
        ("federated", "federated"),
        ("centralized", "centralized"),
        ("local_only", "local-only (mean)"),
    ):
        d = main[key]
        table.add_row(
            name, f"{d['accuracy']:.4f}", f"{d['f1']:.4f}", f"{d.get('roc_auc', float('nan')):.4f}",
            str(main["egress"][key]["raw_records"]),
        )  # fmt: skip
    out.print(table)
    for row in scorecard["rows"]:
        mark = "[green]met[/]" if row["meets_claim"] else "[red]not met[/]"
        out.print(
            f"  {mark}  {row['claim']}: measured {row['measured']} ({row['unit']}); "
            f"claimed {row['claimed']}",
            highlight=False,
        )
    cost = main["federated"].get("compute", {})
    if cost.get("proofs"):
        rejected = sum(len(r["rejected"]) for r in main["federated"]["per_round"])
        verified = sum(r["verified"] for r in main["federated"]["per_round"])
        out.print(
            f"contribution proofs (‖update‖₂ ≤ {cost['norm_bound']:g}, {cost['params']:,} "
            f"params): {_secs(cost.get('contribution_s_per_member_round'))} per member "
            f"per round to encode, commit and prove (during the key exchange; "
            f"{_secs(cost.get('prover_masks_s_per_member_round'))} more for the next proof's "
            f"masks while the coordinator verifies) and "
            f"{cost['masked_input_s_per_member_round']:.3f} s to mask "
            f"(local training {cost['train_s_per_member_round']:.3f} s), "
            f"{cost['masked_input_bytes_per_member_round'] / 1e3:,.0f} kB sent; coordinator "
            f"verifies a round in {cost['verify_s_per_round']:.3f} s; {verified} of "
            f"{len(main['federated']['per_round'])} aggregates opened their commitments, "
            f"{rejected} proofs rejected",
            highlight=False,
        )
    ua = main.get("under_attack")
    if ua:
        r = ua["runs"]
        bad = (ua["malicious"]["backdoor"], *ua["malicious"]["sybil"])
        caught = [m for m in bad if m in r["defended"]["quarantined"]]
        rounds = main["config"]["rounds"]
        kept = [m for m in bad if r["defended"]["rounds_kept_out"][m] * 2 >= rounds]
        out.print(
            f"under attack ({ua['scenario']}): F1 clean {r['clean']['f1']:.4f}, FedAvg "
            f"{r['fedavg']['f1']:.4f} with backdoor success {r['fedavg']['backdoor_success']:.1%}, "
            f"defended {r['defended']['f1']:.4f} with {r['defended']['backdoor_success']:.1%}; "
            f"{len(kept)} of 3 malicious identities kept out of most rounds, {len(caught)} "
            "quarantined",
            highlight=False,
        )
    cd = main.get("collective_defence")
    if cd:
        out.print(
            f"collective defence: {cd['family']} (new) detected at members that never saw it "
            f"{cd['unseen_family_detection_before']:.1%} → "
            f"{cd['unseen_family_detection_after']:.1%} after one member shared its signature; "
            f"protection reached the last member in {cd['p50_ms']:.0f} ms (p50; hub polled "
            f"every {cd['hub_interval_s']:g} s: {cd['hub_p50_ms']:.0f} ms)",
            highlight=False,
        )
    ledger = main["federated"].get("ledger")
    if ledger:
        out.print(
            f"audit log: {ledger['size']} entries, verdict {ledger['verdict']} "
            f"(guardians audit verify --log {ledger['path']} --trust {out_dir / 'trust.json'})"
        )
    eng = main["federated"].get("engine")
    if eng:
        out.print(
            f"federated training ran over Flower {eng['flwr']}: SuperLink {eng['superlink']}, "
            f"{eng['members']} SuperNodes and member nodes, "
            f"{eng['seconds_per_round']:.1f} s per round (work directory {eng['workdir']})"
        )
    out.print(f"portal: guardians portal serve --dir {out_dir}")
    out.print(
        f"wrote {out_dir / 'report.html'}, metrics.json, scorecard.json "
        f"in {time.perf_counter() - started:.1f} s"
    )


bench_app = typer.Typer(
    help="Benchmarks: each compares against its anchor in the same run and reports the ratio.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


@bench_app.command("secagg")
def bench_secagg_cmd(
    clients: Annotated[int, typer.Option(help="Members in the round.", min=3)] = 100,
    params: Annotated[int, typer.Option(help="Parameters per update (D).", min=1)] = 1_000_000,
    dropout: Annotated[
        float,
        typer.Option(help="Fraction of members that drop after sharing keys.", min=0.0, max=0.9),
    ] = 0.1,
    vs_flower: Annotated[
        bool, typer.Option(help="Also run Flower's SecAgg+ (needs the `bench` extra: flwr).")
    ] = False,
    degree: Annotated[
        int | None, typer.Option(help="Neighbours per member (default: ~2 log2 N, even).")
    ] = None,
    modulus_bits: Annotated[int, typer.Option(help="Mask modulus 2^b: 32 or 64.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed for inputs and dropouts.", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object only.")] = False,
) -> None:
    """One secure-aggregation round: ours vs Flower's SecAgg+ vs plaintext FedAvg, timed per
    party in the same run (critical path = slowest member + coordinator)."""
    from guardians.bench.secagg import bench_secagg

    if vs_flower:
        try:
            import flwr  # noqa: F401
        except ImportError:
            console.print("[bold red]error:[/] --vs-flower needs flwr: pip install -e '.[bench]'")
            raise typer.Exit(code=2) from None
    try:
        with console.status(f"secure aggregation: {clients} members, {params:,} parameters"):
            res = bench_secagg(
                clients, params, dropout, vs_flower=vs_flower, degree=degree, seed=seed,
                modulus_bits=modulus_bits,
            )  # fmt: skip
    except GuardiansError as exc:
        raise _fail(exc) from None
    res["command"] = "guardians " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if as_json:
        out.print_json(json.dumps(_jsonable(res)))
        return
    table = Table(title=f"SecAgg round: N={clients}, D={params:,}, dropout {dropout:.0%}, "
                        f"k={res['degree']}, t={res['threshold']}")  # fmt: skip
    for col in ("", "member mean (s)", "member max (s)", "coordinator (s)", "round (s)"):
        table.add_column(col, justify="right" if col else "left")
    for key in ("ours", "flower", "plaintext"):
        if key in res:
            r = res[key]
            table.add_row(key, f"{r['client_mean_s']:.3f}", f"{r['client_max_s']:.3f}",
                          f"{r['coordinator_s']:.3f}", f"{r['round_s']:.3f}")  # fmt: skip
    out.print(table)
    if "speedup_vs_flower" in res:
        out.print(f"ours is {res['speedup_vs_flower']:.2f}× faster than Flower SecAgg+")
    out.print(f"overhead vs plaintext FedAvg: {res['overhead_vs_plaintext']:.1f}×; "
              f"max |error| vs plaintext mean: {res['ours_max_abs_error']:.2e}")  # fmt: skip


@bench_app.command("ledger")
def bench_ledger_cmd(
    entries: Annotated[int, typer.Option(help="Entries to append.", min=1000)] = 200_000,
    batch: Annotated[int, typer.Option(help="Entries per atomic batch.", min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object only.")] = False,
) -> None:
    """Sustained batched appends, inclusion and consistency proofs, and verifications on the
    SQLite transparency log, next to Trillian Tessera's published POSIX figure."""
    from guardians.bench.ledger import bench_ledger

    with console.status(f"transparency log: {entries:,} entries"):
        res = bench_ledger(entries, batch)
    res["command"] = "guardians " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if as_json:
        out.print_json(json.dumps(_jsonable(res)))
        return
    table = Table(title=f"Transparency log: {entries:,} entries, batches of {batch}")
    table.add_column("operation")
    table.add_column("per second", justify="right")
    for key in ("appends_per_s", "inclusion_proofs_per_s", "consistency_proofs_per_s",
                "verifications_per_s", "consistency_verifications_per_s"):  # fmt: skip
        table.add_row(key.removesuffix("_per_s").replace("_", " "), f"{res[key]:,.0f}")
    out.print(table)
    out.print(f"appends: {res['appends_vs_anchor']:.1f}× {res['anchor']}")


@bench_app.command("zk")
def bench_zk_cmd(
    params: Annotated[
        list[int] | None,
        typer.Option(
            "--params",
            help="Parameters per update (D); repeat for several (default: 2^10 … 2^16).",
            min=1,
        ),
    ] = None,
    round_: Annotated[
        bool,
        typer.Option(
            "--round/--no-round",
            help="Also time whole rounds (plaintext, secagg, verifiable) on NSL-KDD.",
        ),
    ] = True,
    round_params: Annotated[
        int | None,
        typer.Option(help="D of the round's MLP (default: the largest --params).", min=16),
    ] = None,
    members: Annotated[int, typer.Option(help="Members in the round.", min=3)] = 8,
    epochs: Annotated[int, typer.Option(help="Local epochs per round.", min=1)] = 1,
    batch_size: Annotated[
        int,
        typer.Option(
            help="Local minibatch size (RoFL's MNIST round: --epochs 5 --batch-size 32).", min=1
        ),
    ] = 64,
    rounds: Annotated[
        int, typer.Option(help="Rounds per setting (the first is a warm-up).", min=1)
    ] = 3,
    seed: Annotated[int, typer.Option(help="Seed for updates, partition and models.", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object only.")] = False,
) -> None:
    """Contribution (L2 norm-bound) proofs: commit + prove, verify and proof size per D next to
    RoFL's published µs per parameter, and a verifiable round against a plaintext round with
    the same members and D (critical path: slowest member + coordinator)."""
    from guardians.bench.zk import DEFAULT_PARAMS, ROFL, bench_zk

    dims = tuple(params) if params else DEFAULT_PARAMS
    if max(dims) > 1 << 20:
        raise _fail(ConfigError("--params above 2^20 would need over 2 GB of generators"))

    def note(msg: str) -> None:
        if not as_json:
            console.print(f"  {msg}", highlight=False)

    note("generators are derived once per D and cached (≈ 0.3 ms each)")
    try:
        with console.status("contribution proofs"):
            res = bench_zk(dims, round_params=round_params, members=members, epochs=epochs,
                           batch_size=batch_size, rounds=rounds, run_round=round_, seed=seed,
                           progress=note)  # fmt: skip
    except GuardiansError as exc:
        raise _fail(exc) from None
    res["command"] = "guardians " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if as_json:
        out.print_json(json.dumps(_jsonable(res)))
        return
    table = Table(title="Contribution proofs (‖update‖₂ ≤ B), one member, this machine")
    for col in ("D", "commit+prove s", "of which once the update exists", "verify s",
                "prove µs/param", "verify µs/param", "batched verify µs/param",
                "proof kB"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in res["sizes"]:
        table.add_row(
            f"{r['params']:,}", f"{r['prove_s']:.3f}", f"{r['prove_once_update_s']:.3f}",
            f"{r['verify_s']:.3f}",
            f"{r['prove_us_per_param']:.1f}", f"{r['verify_us_per_param']:.1f}",
            f"{r['verify_batched_us_per_param']:.1f}", f"{r['proof_bytes'] / 1e3:,.0f}",
        )  # fmt: skip
    out.print(table)

    def versus(ratio: float) -> str:  # ratio: RoFL's µs per parameter over ours
        return f"{ratio:.1f}× fewer" if ratio >= 1 else f"{1 / ratio:.1f}× more"

    out.print(
        f"at D = {res['params']:,}: prove with {versus(res['vs_rofl']['prove'])} and verify "
        f"with {versus(res['vs_rofl']['verify'])} µs per parameter than {ROFL['source']} "
        f"({ROFL['prove_us_per_param']:.0f} / {ROFL['verify_us_per_param']:.0f} µs)",
        highlight=False,
    )
    rnd = res.get("round")
    if rnd:
        rt = Table(
            title=f"A round: {rnd['members']} members, D = {rnd['params']:,}, "
            f"{rnd['epochs']} local epoch(s) of batches of {rnd['batch_size']} over "
            f"~{rnd['records_per_member']:,} NSL-KDD records each"
        )
        for col in ("setting", "latency s", "× plaintext", "serial s", "× plaintext",
                    "work ahead left out s", "× plaintext"):  # fmt: skip
            rt.add_column(col, justify="right")
        for mode in ("plaintext", "secagg", "verifiable"):
            m, p = rnd[mode], rnd["plaintext"]
            rt.add_row(
                mode, f"{m['latency_s']:.3f}", f"{m['latency_s'] / p['latency_s']:.1f}",
                f"{m['round_s']:.3f}", f"{m['round_s'] / p['round_s']:.1f}",
                f"{m['round_ahead_s']:.3f}", f"{m['round_ahead_s'] / p['round_ahead_s']:.1f}",
            )  # fmt: skip
        out.print(rt)
        out.print(
            "latency: every party on its own machine, messages instant; serial: the slowest "
            "member's steps plus the coordinator's, one after the other. Goal ≤ 3× "
            f"(RoFL: {ROFL['round_overhead_vs_plaintext']}×). Proofs add "
            f"{rnd['proof_added_latency_s']:.2f} s of latency: ≤ 3× once a plaintext round "
            f"takes {rnd['break_even_plaintext_latency_s']:.2f} s; one member's commitment "
            f"alone is {res['commitment_vs_plaintext_round']:.1f}× this plaintext round.",
            highlight=False,
        )
        fl = rnd["msm_floor"]
        out.print(
            f"Floor of this design here: its three MSMs over D (commitment {fl['commit_s']:.3f} "
            f"s, the verifier's full-size MSM {fl['verify_s']:.3f} s, the opening check "
            f"{fl['opening_s']:.3f} s) would alone make the round "
            f"{rnd['floor_overhead_latency']:.1f}× this plaintext round.",
            highlight=False,
        )


@bench_app.command("robustness")
def bench_robustness_cmd(
    quick: Annotated[
        bool, typer.Option(help="4 defences × 3 attacks at 20%, 8 rounds (about a minute).")
    ] = False,
    defence: Annotated[
        list[str] | None,
        typer.Option(
            "--defence",
            help="Aggregation rule to test, or 'default' (Multi-Krum + monitoring + quarantine); "
            "repeat (default: all).",
        ),
    ] = None,
    attack: Annotated[
        list[str] | None, typer.Option("--attack", help="Attack to play; repeat (default: all).")
    ] = None,
    fraction: Annotated[
        list[float] | None,
        typer.Option("--fraction", help="Malicious share of members; repeat (default: .1 .2 .3)."),
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="Rounds per run (default 20).", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Seed for partition, models, attackers.", min=0)] = 0,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Also write robustness.json and robustness.html (heatmap)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object only.")] = False,
) -> None:
    """Defences × attacks × malicious fraction on NSL-KDD (10 non-IID members): F1 on KDDTest+,
    backdoor success, and how often each rule left malicious and honest members out."""
    from guardians.bench import robustness as rb
    from guardians.learning.aggregate import RULES
    from guardians.learning.attacks import ATTACKS
    from guardians.report.plots import robustness_heatmap

    base = rb.QUICK if quick else {}
    defences = tuple(defence or base.get("defences", rb.DEFENCES))
    attacks_ = tuple(attack or base.get("attacks", rb.MATRIX_ATTACKS))
    fractions = tuple(fraction or base.get("fractions", rb.FRACTIONS))
    bad = [d for d in defences if d.removeprefix("norm-bound+") not in (*RULES, rb.DEFAULT)]
    bad += [a for a in attacks_ if a not in ATTACKS or a == "none"]
    if bad:
        known = f"defences: {', '.join((*RULES, rb.DEFAULT))}; attacks: {', '.join(ATTACKS[1:])}"
        raise _fail(ConfigError(f"unknown defence or attack: {', '.join(bad)}; {known}"))
    if any(not 0 < f < 0.5 for f in fractions):
        raise _fail(ConfigError("--fraction must be in (0, 0.5)"))
    setting = rb.Setting(rounds=rounds or base.get("rounds", 20), seed=seed)

    def note(msg: str) -> None:
        if not as_json:
            console.print(f"  {msg}", highlight=False)

    try:
        res = rb.bench_robustness(defences, attacks_, fractions, setting=setting, progress=note)
    except GuardiansError as exc:
        raise _fail(exc) from None
    res["command"] = "guardians " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "robustness.json", res)
        (out_dir / "robustness.html").write_text(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Guardians "
            "robustness</title></head><body><h1>Robustness: defences × attacks</h1>"
            f"<p>Command: <code>{res['command']}</code></p>{robustness_heatmap(res)}</body></html>",
            encoding="utf-8",
        )
    if as_json:
        out.print_json(json.dumps(_jsonable(res)))
        return
    table = Table(title="At 20% malicious: worst attack per defence")
    for col in ("defence", "clean F1", "worst attack", "F1 drop (points)", "max backdoor",
                "goal"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("defence", "worst attack") else "right")
    for d, s in res["summary"].items():
        table.add_row(d, f"{res['clean_f1'][d]:.3f}", str(s["worst_attack"]),
                      f"{s['worst_f1_drop_points']:.1f}", f"{s['max_backdoor_success']:.1%}",
                      "[green]met[/]" if s["meets_goal"] else "[red]not met[/]")  # fmt: skip
    out.print(table)


@bench_app.command("intel")
def bench_intel_cmd(
    members: Annotated[int, typer.Option(help="Members, the detecting one included.", min=3)] = 8,
    trials: Annotated[int, typer.Option(help="Propagation trials per setting.", min=1)] = 20,
    hub_interval: Annotated[
        float,
        typer.Option(help="Seconds between a hub member's polls (MISP-style sync).", min=0.05),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for partition and model.", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object only.")] = False,
) -> None:
    """Collective defence: one member's discovery protecting the others — detection of a new
    attack family before and after the shared signature, and propagation latency to the last
    member over TAXII on loopback, next to a hub polled at a fixed interval."""
    from guardians.bench.intel import bench_intel

    def note(msg: str) -> None:
        if not as_json:
            console.print(f"  {msg}", highlight=False)

    res = bench_intel(members=members, trials=trials, hub_interval=hub_interval, seed=seed,
                      progress=note)  # fmt: skip
    res["command"] = "guardians " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if as_json:
        out.print_json(json.dumps(_jsonable(res)))
        return
    out.print(
        f"new family {res['family']} ({res['family_records']} KDDTest+ records): detection at "
        f"members that never saw it {res['unseen_family_detection_before']:.1%} → "
        f"{res['unseen_family_detection_after']:.1%}; false positives on normal traffic "
        f"{res['normal_fpr_before']:.2%} → {res['normal_fpr_after']:.2%}",
        highlight=False,
    )
    out.print(
        f"propagation to the last of {members - 1} members: p50 {res['p50_ms']:.1f} ms, p99 "
        f"{res['p99_ms']:.1f} ms; hub polled every {hub_interval:g} s: p50 "
        f"{res['hub_p50_ms']:.1f} ms, p99 {res['hub_p99_ms']:.1f} ms "
        f"({res['latency_reduction_p50']:.0%} lower at p50); feed anonymized "
        f"{res['anonymized_share']:.0%}",
        highlight=False,
    )


audit_app = typer.Typer(help="Audit the consortium's transparency log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    log: Annotated[
        str,
        typer.Option(
            "--log",
            help="Log directory (log.db, checkpoint), or the URL prefix of a "
            "C2SP tlog-tiles server or mirror.",
        ),
    ],
    trust: Annotated[
        Path | None,
        typer.Option(
            help="The consortium's trust file (log key, witness keys, quorum, anchor), "
            "obtained out of band. Required: a log's own trust.json proves nothing."
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="Where this auditor keeps the last checkpoint it accepted, to check that "
            "history was only ever appended to (default: one file per log origin under "
            "$GUARDIANS_STATE_DIR or ~/.local/state/guardians/audit)."
        ),
    ] = None,
    rpc: Annotated[
        str | None,
        typer.Option(help="Ethereum JSON-RPC endpoint holding the anchor contract."),
    ] = None,
    contract: Annotated[
        str | None, typer.Option(help="Address of the anchor contract (with --rpc).")
    ] = None,
    genesis: Annotated[
        Path | None,
        typer.Option(
            help="The consortium's genesis (consortium.json), held by every member: pins the "
            "members' identity keys, so the log's admissions and the witness attestations are "
            "checked against keys the operator did not choose."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Verify a log without trusting its operator: checkpoint signatures and witness quorum,
    witness attestations, every hash recomputed from the entries, consistency with the last
    audit, inclusion of every model version, and the signed evidence behind every rejected
    contribution. Exit code 1 on any failure."""
    import tempfile

    from guardians.engine.audit import audit_log_dir

    identities = None
    if genesis is not None:
        from guardians.errors import GuardiansError
        from guardians.node.deployment import ConsortiumConfig

        try:
            keys = ConsortiumConfig.load(genesis).verify_keys()
        except GuardiansError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=2) from None
        identities = {m: k.raw for m, k in keys.items()}

    anchor = None
    if rpc or contract:
        if not (rpc and contract):
            console.print("[bold red]error:[/] --rpc and --contract go together")
            raise typer.Exit(code=2)
        from web3 import Web3

        from guardians.ledger.anchor import Anchor

        anchor = Anchor(Web3(Web3.HTTPProvider(rpc)), Web3.to_checksum_address(contract), "")
    with tempfile.TemporaryDirectory() as tmp:
        if log.startswith(("http://", "https://")):
            report = _verify_url(log, Path(tmp), trust, state, anchor, identities)
        else:
            if not Path(log).is_dir():
                console.print(f"[bold red]error:[/] {log} is not a log directory")
                raise typer.Exit(code=2)
            report = audit_log_dir(log, trust=trust, state=state or "default", anchor=anchor,
                                   identities=identities)  # fmt: skip
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        for name, ok, detail in report.checks:
            mark = "[green]PASS[/]" if ok else "[bold red]FAIL[/]"
            out.print(f"{mark}  {name}: {detail}", highlight=False)
        verdict = "[bold green]VERIFIED[/]" if report.ok else "[bold red]NOT VERIFIED[/]"
        out.print(f"{verdict}: {report.log}, {report.size} entries, "
                  f"{report.model_versions} model versions")  # fmt: skip
    if not report.ok:
        raise typer.Exit(code=1)


def _verify_url(
    url: str, tmp: Path, trust: Path | None, state: Path | None, anchor: Any,
    identities: dict[str, bytes] | None = None,
) -> Any:  # fmt: skip
    import httpx

    from guardians.engine.audit import MAX_EVIDENCE_BYTES, audit_log_dir, evidence_names
    from guardians.ledger.audit import AuditReport
    from guardians.ledger.tiles import download_log

    prefix = url.rstrip("/") + "/"
    with httpx.Client(timeout=30.0, follow_redirects=False) as client:

        def fetch(path: str) -> bytes:
            r = client.get(prefix + path)
            if r.status_code != 200:
                raise GuardiansError(f"GET {prefix + path}: HTTP {r.status_code}")
            return r.content

        try:
            _, checked = download_log(fetch, tmp / "log")
        except (GuardiansError, httpx.HTTPError) as exc:
            report = AuditReport(url)
            report.add("tiles", False, f"{type(exc).__name__}: {exc}")
            return report
        # The signed evidence behind each rejected contribution, named by the log's digests.
        (tmp / "log" / "evidence").mkdir(exist_ok=True)
        for name in evidence_names(tmp / "log"):
            body = _fetch_bounded(client, prefix + "evidence/" + name, MAX_EVIDENCE_BYTES)
            if body is not None:  # a missing one fails the evidence check
                (tmp / "log" / "evidence" / name).write_bytes(body)
    report = audit_log_dir(tmp / "log", trust=trust, state=state or "default", anchor=anchor,
                           identities=identities)  # fmt: skip
    report.log = url
    report.checks.insert(0, ("tiles", True, f"{checked} hash tiles match the entries"))
    return report


def _fetch_bounded(client: Any, url: str, limit: int) -> bytes | None:
    """The body of a 200 answer of at most ``limit`` bytes, else None."""
    import httpx

    try:
        with client.stream("GET", url) as r:
            if r.status_code != 200:
                return None
            body = bytearray()
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > limit:
                    return None
            return bytes(body)
    except httpx.HTTPError:
        return None


ledger_app_cli = typer.Typer(help="Run the consortium's transparency log.", no_args_is_help=True)
app.add_typer(ledger_app_cli, name="ledger")


@ledger_app_cli.command("serve")
def ledger_serve(
    log: Annotated[Path, typer.Option("--log", help="Log directory (log.db, checkpoint).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the log read-only over HTTP as C2SP tlog-tiles (/checkpoint, /tile/...), so any
    member, auditor or static mirror can fetch and verify it."""
    import uvicorn

    from guardians.engine.http import ledger_app

    if not (log / "log.db").is_file():
        console.print(f"[bold red]error:[/] no log.db in {log}")
        raise typer.Exit(code=2)
    console.print(f"serving {log} at http://{host}:{port}/ (checkpoint, tile/...)")
    uvicorn.run(ledger_app(log), host=host, port=port, log_level="warning")


intel_app = typer.Typer(
    help="Threat-intelligence sharing: anonymized STIX 2.1 over TAXII 2.1.", no_args_is_help=True
)
app.add_typer(intel_app, name="intel")
app.add_typer(member_app, name="member")


def _members_file(path: Path) -> tuple[str, dict[str, Any], list[Any]]:
    """A consortium member list: {"consortium": name, "members": {name: {"identity": base64
    composite public key, "ring": hex ristretto255 point}}}."""
    from guardians.crypto.group import Point
    from guardians.crypto.sign import VerifyKey

    try:
        doc = json.loads(path.read_text())
        directory = {m: VerifyKey(base64.b64decode(v["identity"]))
                     for m, v in doc["members"].items()}  # fmt: skip
        ring = [Point.from_bytes(bytes.fromhex(v["ring"])) for v in doc["members"].values()]
        return str(doc["consortium"]), directory, ring
    except (OSError, ValueError, KeyError, TypeError, GuardiansError) as exc:
        raise _fail(
            ConfigError(f"{path}: not a member list ({type(exc).__name__}: {exc})")
        ) from None


@intel_app.command("serve")
def intel_serve(
    db: Annotated[Path, typer.Option(help="SQLite file of the feed (created if missing).")] = Path(
        "out/intel/intel.db"
    ),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    collection: Annotated[
        str, typer.Option(help="Title of the collection created when the feed is new.")
    ] = "indicators",
    user: Annotated[
        list[str] | None, typer.Option(help="NAME:PASSWORD allowed in (HTTP Basic); repeat.")
    ] = None,
    members: Annotated[
        Path | None,
        typer.Option(
            help="Member list: only objects signed by a member or carrying a "
            "membership proof are accepted."
        ),
    ] = None,
    epoch: Annotated[
        int,
        typer.Option(
            help="Current key epoch: anonymous objects of this one or the "
            "previous one are accepted.",
            min=0,
        ),
    ] = 0,
) -> None:
    """Serve the consortium's feed as a TAXII 2.1 server (discovery at /taxii2/)."""
    import uvicorn

    from guardians.engine.taxii import taxii_app
    from guardians.intel import auth
    from guardians.intel.store import IntelStore

    users = None
    if user:
        users = {}
        for u in user:
            name, sep, pw = u.partition(":")
            if not sep or not name or not pw:
                raise _fail(ConfigError(f"--user {u!r}: expected NAME:PASSWORD"))
            users[name] = pw
    db.parent.mkdir(parents=True, exist_ok=True)
    store = IntelStore(db)
    if not store.collections():
        store.create_collection(collection, "consortium indicators (anonymized)")
    check = None
    if members is not None:
        consortium, directory, ring = _members_file(members)

        current = {epoch, max(0, epoch - 1)}

        def check(obj: dict[str, Any]) -> tuple[str, str]:
            return auth.verify(obj, consortium, directory, ring, epochs=current)

    else:
        console.print("[yellow]warning:[/] no --members: objects are accepted unauthenticated")
    if users is None:
        console.print("[yellow]warning:[/] no --user: anyone who can reach the port can read")
    for c in store.collections():
        console.print(f"collection {c['id']} ({c['title']})", highlight=False)
    console.print(f"TAXII 2.1 at http://{host}:{port}/taxii2/", highlight=False)
    uvicorn.run(taxii_app(store, users=users, authenticate=check), host=host, port=port,
                log_level="warning")  # fmt: skip


def _collection(url: str, user: str | None, password: str | None) -> Any:
    from taxii2client.v21 import Collection

    if not url.endswith("/"):
        url += "/"
    return Collection(url, user=user, password=password)


@intel_app.command("push")
def intel_push(
    bundle_file: Annotated[Path, typer.Argument(help="A STIX 2.1 bundle (JSON).")],
    url: Annotated[str, typer.Option(help="Collection URL: .../api/collections/ID/")],
    user: Annotated[str | None, typer.Option(help="HTTP Basic user.")] = None,
    password: Annotated[str | None, typer.Option(help="HTTP Basic password.")] = None,
) -> None:
    """Validate a bundle locally, then add it to a TAXII 2.1 collection (ours or any other)."""
    from guardians.intel.stix import parse_bundle

    try:
        objs = parse_bundle(bundle_file.read_bytes())
    except OSError as exc:
        raise _fail(ConfigError(f"{bundle_file}: {exc}")) from None
    except GuardiansError as exc:
        raise _fail(exc) from None
    try:
        status = _collection(url, user, password).add_objects(bundle_file.read_text())
    except Exception as exc:  # the client raises requests' and its own exception types
        raise _fail(ConfigError(f"push to {url} failed: {exc}")) from None
    out.print(f"pushed {len(objs)} objects: status {status.status}, {status.success_count} "
              f"succeeded, {status.failure_count} failed", highlight=False)  # fmt: skip


@intel_app.command("pull")
def intel_pull(
    url: Annotated[str, typer.Option(help="Collection URL: .../api/collections/ID/")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the bundle.")],
    added_after: Annotated[
        str | None, typer.Option(help="Only objects added after this timestamp.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="HTTP Basic user.")] = None,
    password: Annotated[str | None, typer.Option(help="HTTP Basic password.")] = None,
) -> None:
    """Read a TAXII 2.1 collection (every page), validate it, write one STIX bundle."""
    from taxii2client.v21 import as_pages

    from guardians.intel.stix import parse_bundle

    coll = _collection(url, user, password)
    objs: list[Any] = []
    kw = {"added_after": added_after} if added_after else {}
    try:
        for page in as_pages(coll.get_objects, per_request=500, **kw):
            objs.extend(page.get("objects", []))
    except Exception as exc:
        raise _fail(ConfigError(f"pull from {url} failed: {exc}")) from None
    if not objs:
        out.print("no objects", highlight=False)
        return
    doc = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objs}
    try:
        parse_bundle(json.dumps(doc), max_bytes=1 << 30)
    except GuardiansError as exc:
        raise _fail(exc) from None
    out_file.write_text(json.dumps(doc, indent=1))
    out.print(f"pulled {len(objs)} objects into {out_file}", highlight=False)


@intel_app.command("share")
def intel_share(
    detections: Annotated[
        Path,
        typer.Argument(
            help="JSON list of detections: family, protocol, dst_port, src_ip, "
            "dst_ip, domain, count, first_seen."
        ),
    ],
    secret_file: Annotated[
        Path, typer.Option(help="The consortium secret (≥ 32 bytes, hex) keying observables.")
    ],
    epoch: Annotated[int, typer.Option(help="Key epoch (rotate it).", min=0)],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the bundle.")],
    consortium: Annotated[str, typer.Option(help="The consortium's name.")] = "guardians",
    tlp: Annotated[str, typer.Option(help="TLP marking: clear, green, amber, red.")] = "green",
) -> None:
    """Turn a member's detections into the anonymized Indicator and Sighting it may publish,
    and scan the result for anything raw that would leak."""
    import stix2

    from guardians.intel.anonymize import Anonymizer, EpochKey
    from guardians.intel.scan import scan_feed
    from guardians.intel.stix import TLP, Detection, bundle

    if tlp not in TLP:
        raise _fail(ConfigError(f"--tlp must be one of {', '.join(TLP)}"))
    try:
        key = EpochKey.derive(bytes.fromhex(secret_file.read_text().strip()), epoch)
        rows = json.loads(detections.read_text())
        dets = [Detection(**{**r, "first_seen": datetime.fromisoformat(r["first_seen"])}
                          if "first_seen" in r else r) for r in rows]  # fmt: skip
    except (OSError, ValueError, TypeError) as exc:
        raise _fail(ConfigError(f"{type(exc).__name__}: {exc}")) from None
    except GuardiansError as exc:
        raise _fail(exc) from None
    ident = stix2.Identity(name=consortium, identity_class="organization")
    anon = Anonymizer(ident, key)
    objs = [o for d in dets for o in anon.share(d, tlp=tlp)]
    raw = [v for d in dets for v in (d.src_ip, d.dst_ip, d.domain) if v]
    scan = scan_feed(objs, secrets=raw)
    out_file.write_text(bundle(objs))
    out.print(f"wrote {len(objs)} objects to {out_file}; anonymized share "
              f"{scan.anonymized_share:.1%} (scanned for {len(raw)} raw observables)",
              highlight=False)  # fmt: skip
    if scan.leaking:
        raise _fail(ConfigError(f"raw observables found in {sorted(scan.leaking)}"))


zk_app = typer.Typer(
    help="Prove facts about a committed attribute without revealing it (Pedersen commitments, "
    "Bulletproofs range proofs on ristretto255).",
    no_args_is_help=True,
)
app.add_typer(zk_app, name="zk")


def _ctx_options(
    consortium: str, round: int, member: str, purpose: str
) -> Any:  # the Context type lives in the crypto layer, imported lazily
    from guardians.crypto.zk.sigma import Context

    if not 0 <= round < 1 << 63:
        raise ConfigError(f"the context's round must be in [0, 2^63), not {round}")
    for name, text in (("consortium", consortium), ("member", member), ("purpose", purpose)):
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ConfigError(f"the context's {name} is not valid text") from None
    return Context(consortium, round, member, purpose)


@zk_app.command("commit")
def zk_commit(
    value: Annotated[int, typer.Option(help="The attribute (an integer: records, days, ...).")],
    secret: Annotated[
        Path, typer.Option(help="Where to keep the opening (value, blinding): private to you.")
    ],
) -> None:
    """Commit to an attribute. Prints the commitment (public) and writes the opening (private,
    created anew: an existing file is never overwritten, as its blinding would be lost)."""
    from guardians.crypto.commit import commit
    from guardians.crypto.group import Scalar

    if not 0 <= value < 1 << 64:
        raise _fail(ConfigError(f"the attribute must be an integer in [0, 2^64), not {value}"))
    r = Scalar.random()
    c = commit(Scalar.of(value), r)
    text = json.dumps({"value": value, "blinding": r.to_bytes().hex(),
                       "commitment": c.to_bytes().hex()}) + "\n"  # fmt: skip
    try:
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _fail(ConfigError(f"{secret} exists: it may hold the opening of a published "
                                "commitment; choose another path")) from None  # fmt: skip
    except OSError as exc:
        raise _fail(ConfigError(f"cannot create {secret}: {exc.strerror}")) from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    out.print(c.to_bytes().hex())


def _json_file(path: Path, what: str) -> Any:
    """A small JSON file (a proof or an opening), strictly (see :func:`files.read_json`)."""
    from guardians import files

    try:
        return files.read_json(path, files.SMALL)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}") from None


def _field(obj: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ConfigError(f"{what} has no {key!r}")
    v = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
        raise ConfigError(f"{what}: {key!r} must be {' or '.join(k.__name__ for k in kinds)}, "
                          f"not {type(v).__name__}")  # fmt: skip
    return v


@zk_app.command("prove")
def zk_prove(
    secret: Annotated[Path, typer.Option(help="The opening written by `guardians zk commit`.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the proof (public).")],
    ge: Annotated[int | None, typer.Option(help="Prove value ≥ GE.")] = None,
    le: Annotated[int | None, typer.Option(help="Prove value ≤ LE.")] = None,
    bits: Annotated[int, typer.Option(help="Range size 2^bits: 8, 16, 32 or 64.")] = 32,
    consortium: Annotated[str, typer.Option(help="Context: consortium.")] = "guardians",
    round: Annotated[int, typer.Option(help="Context: round or epoch.")] = 0,
    member: Annotated[str, typer.Option(help="Context: who proves.")] = "member",
    purpose: Annotated[str, typer.Option(help="Context: what the proof is for.")] = "attribute",
) -> None:
    """Prove a predicate on the committed attribute; the proof reveals nothing else."""
    from guardians.crypto.group import Point, Scalar
    from guardians.crypto.zk.predicates import Predicate, prove_predicate

    try:
        s = _json_file(secret, "opening")
        c = Point.from_bytes(bytes.fromhex(_field(s, "commitment", str, "opening")))
        value = _field(s, "value", int, "opening")
        blinding = Scalar.from_bytes(bytes.fromhex(_field(s, "blinding", str, "opening")))
        pred = Predicate(low=ge, high=le, bits=bits)
        ctx = _ctx_options(consortium, round, member, purpose)
        proof = prove_predicate(ctx, c, value, blinding, pred)
    except ValueError as exc:
        raise _fail(ConfigError(str(exc))) from None
    except GuardiansError as exc:
        raise _fail(exc) from None
    text = json.dumps({
        "commitment": c.to_bytes().hex(), "predicate": {"ge": ge, "le": le, "bits": bits},
        "context": {"consortium": consortium, "round": round, "member": member,
                    "purpose": purpose},
        "proof": proof.hex(),
    }, indent=2) + "\n"  # fmt: skip
    try:
        out_path.write_text(text)
    except OSError as exc:
        raise _fail(ConfigError(f"cannot write {out_path}: {exc.strerror}")) from None
    out.print(f"proved {pred.describe()} ({len(proof)} bytes) → {out_path}")


@zk_app.command("verify")
def zk_verify(
    proof_path: Annotated[Path, typer.Option("--proof", help="A proof from `guardians zk prove`.")],
) -> None:
    """Verify an attribute proof. Exit code 1 if it does not verify."""
    from guardians.crypto.group import Point
    from guardians.crypto.zk.predicates import Predicate, verify_predicate

    try:
        d = _json_file(proof_path, "proof file")
        c = Point.from_bytes(bytes.fromhex(_field(d, "commitment", str, "proof file")))
        p = _field(d, "predicate", dict, "proof file")
        bounds = [None if p.get(k) is None else _field(p, k, int, "predicate")
                  for k in ("ge", "le")]  # fmt: skip
        pred = Predicate(low=bounds[0], high=bounds[1], bits=_field(p, "bits", int, "predicate"))
        cx = _field(d, "context", dict, "proof file")
        if set(cx) != {"consortium", "round", "member", "purpose"}:
            raise ConfigError("proof file: the context names consortium, round, member, purpose")
        ctx = _ctx_options(
            _field(cx, "consortium", str, "context"), _field(cx, "round", int, "context"),
            _field(cx, "member", str, "context"), _field(cx, "purpose", str, "context"),
        )  # fmt: skip
        proof = bytes.fromhex(_field(d, "proof", str, "proof file"))
    except (ValueError, GuardiansError) as exc:
        console.print(f"[bold red]error:[/] malformed proof file: {exc}")
        raise typer.Exit(code=2) from None
    try:
        verify_predicate(ctx, c, pred, proof)
    except GuardiansError as exc:
        out.print(f"[bold red]INVALID[/]: {exc}")
        raise typer.Exit(code=1) from None
    out.print(f"[bold green]VALID[/]: commitment {d['commitment'][:16]}… satisfies "
              f"{pred.describe()} for {d['context']}")  # fmt: skip


portal_app = typer.Typer(
    help="The consortium's transparency portal: a web page over a demo's ledger.",
    no_args_is_help=True,
)
app.add_typer(portal_app, name="portal")


@portal_app.command("serve")
def portal_serve(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="A demo output directory (from `guardians demo --out DIR`; it may still be "
            "running).",
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    trust: Annotated[
        Path | None,
        typer.Option(
            help="The consortium's trust file, pinned out of band (default: DIR/trust.json, "
            "the genesis trust the demo hands to auditors; never DIR/ledger/trust.json)."
        ),
    ] = None,
    refresh: Annotated[
        float, typer.Option(min=0.5, help="Seconds between the page's refreshes.")
    ] = 5.0,
) -> None:
    """Serve the transparency portal: the consortium, members and their reputation, rounds,
    model versions and their inclusion in the log (checked by your browser), the latest
    cosigned checkpoint, the Ethereum anchor, incidents and the intel feed. The server verifies
    the checkpoint against the pinned trust file; nothing is loaded from the network.

    Example: guardians portal serve --dir out/demo, then open http://127.0.0.1:8080/. Browsers
    run the inclusion checks only in a secure context: on localhost, or behind HTTPS."""
    import uvicorn

    from guardians.portal import create_app

    if trust is not None and not trust.is_file():
        console.print(f"[bold red]error:[/] no trust file at {trust}")
        raise typer.Exit(code=2)
    try:
        web = create_app(directory, trust=trust, refresh_seconds=refresh)
    except GuardiansError as exc:
        raise _fail(exc) from None
    if trust is None and not (directory / "trust.json").is_file():
        console.print(f"[yellow]warning:[/] no {directory / 'trust.json'} (a running demo writes "
                      "it at the end): the page will show everything as unverified until a "
                      "trust file is pinned")  # fmt: skip
    console.print(f"transparency portal for {directory} at http://{host}:{port}/")
    uvicorn.run(web, host=host, port=port, log_level="warning")
