// Guardians transparency portal. Plain JavaScript, no dependencies, no build step.
//
// The page shows what the server reports (/api/summary) and verifies one thing itself: that
// every model version is included in the log under the checkpoint the server verified. For
// each version it fetches the RFC 9162 inclusion proof with the entry's bytes, hashes the leaf
// with WebCrypto, recomputes the root and compares it with the checkpoint's root.
//
// Ledger text (member names, incident details) is attacker-influenced: it is only ever set as
// textContent, never parsed as HTML.
"use strict";

const DEFAULT_REFRESH_S = 5;
const PROOF_CONCURRENCY = 6;

// ---------------------------------------------------------------------------------------------
// RFC 9162 inclusion verification with WebCrypto
// ---------------------------------------------------------------------------------------------
function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || /[^0-9a-f]/i.test(hex)) {
    throw new Error("malformed hex");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function contains(haystack, needle) {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

async function sha256(...parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    buf.set(p, off);
    off += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}

const LEAF = Uint8Array.of(0x00);
const NODE = Uint8Array.of(0x01);

// RFC 9162 §2.1.3.2, with BigInt so that any uint64 tree size works.
async function rootFromInclusion(index, size, leafHash, path) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn < 0n || fn > sn) throw new Error(`leaf index ${index} outside a tree of size ${size}`);
  if (leafHash.length !== 32) throw new Error("leaf hash is not 32 bytes");
  let r = leafHash;
  for (const p of path) {
    if (p.length !== 32) throw new Error("proof node is not 32 bytes");
    if (sn === 0n) throw new Error("inclusion proof has too many nodes");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(NODE, p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await sha256(NODE, r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("inclusion proof has too few nodes");
  return r;
}

// Verify one model version; returns {ok, detail}. Never trusts the server's leaf hash or root:
// the leaf is hashed here from the entry bytes, and the root compared is the checkpoint's.
async function verifyModel(model, checkpoint) {
  const res = await fetch(`/api/proof/${model.index}?size=${checkpoint.size}`, {
    cache: "no-store",
  });
  const proof = await res.json();
  if (!res.ok) return { ok: false, detail: proof.error || `HTTP ${res.status}` };
  if (proof.index !== model.index || proof.tree_size !== checkpoint.size) {
    return { ok: false, detail: "the server sent a proof for another entry or tree size" };
  }
  const entry = hexToBytes(proof.entry);
  if (!contains(entry, hexToBytes(model.model_hash))) {
    return { ok: false, detail: "the logged entry does not carry the model hash shown" };
  }
  const leaf = await sha256(LEAF, entry);
  if (bytesToHex(leaf) !== proof.leaf_hash) {
    return { ok: false, detail: "the leaf hash sent by the server is not the entry's" };
  }
  let root;
  try {
    root = await rootFromInclusion(model.index, checkpoint.size, leaf, proof.audit_path.map(hexToBytes));
  } catch (e) {
    return { ok: false, detail: `invalid proof: ${e.message}` };
  }
  if (!sameBytes(root, hexToBytes(checkpoint.root_hex))) {
    return { ok: false, detail: `computed root ${bytesToHex(root).slice(0, 16)}… ≠ checkpoint root` };
  }
  return { ok: true, detail: "included ✓ (verified in your browser)" };
}

// ---------------------------------------------------------------------------------------------
// DOM helpers
// ---------------------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function fill(id, ...children) {
  const target = document.getElementById(id);
  target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

function table(headers, rows, attrs = {}) {
  return el(
    "table",
    attrs,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.cls }, h.label ?? h)))),
    el("tbody", {}, rows),
  );
}

const fmt = {
  pct: (x) => (typeof x === "number" ? `${(100 * x).toFixed(1)}%` : "—"),
  num: (x, d = 3) => (typeof x === "number" ? x.toFixed(d) : "—"),
  int: (x) => (typeof x === "number" ? x.toLocaleString("en-US") : "—"),
  ms: (x) => (typeof x === "number" ? `${x.toFixed(0)} ms` : "—"),
  text: (x) => (x === null || x === undefined || x === "" ? "—" : String(x)),
};

function hash(hex, testid, n = 12) {
  if (!hex) return el("span", { class: "muted" }, "—");
  return el("code", { class: "hash", title: hex, "data-value": hex, "data-testid": testid },
    `${hex.slice(0, n)}…`);
}

function badge(state, text, attrs = {}) {
  return el("span", { class: `badge ${state}`, ...attrs }, text);
}

function okBadge(ok, yes = "✓ verified", no = "✗ failed", unknown = "not checked") {
  if (ok === true) return badge("ok", yes);
  if (ok === false) return badge("bad", no);
  return badge("warn", unknown);
}

// ---------------------------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------------------------
const VERDICT_TEXT = {
  verified: "✓ Verified",
  unverified: "Unverified",
  failed: "✗ Verification failed",
};

function renderHeader(s) {
  const v = document.querySelector('[data-testid="verdict"]');
  v.textContent = VERDICT_TEXT[s.verdict] || s.verdict;
  v.className = `verdict badge ${{ verified: "ok", failed: "bad" }[s.verdict] || "warn"}`;
  v.dataset.value = s.verdict;
  document.querySelector('[data-testid="origin"]').textContent =
    s.consortium.origin || "no origin known yet";
  const when = new Date(s.generated_at).toLocaleTimeString("en-GB");
  document.querySelector('[data-testid="refreshed"]').textContent =
    `read ${when} · refreshes every ${s.refresh_seconds} s`;
  fill("footer-dir", `demo directory ${s.directory}`);
}

function kpi(label, value, note, attrs = {}, state = "") {
  return el("div", { class: `kpi ${state}` },
    el("div", { class: "kpi-label" }, label),
    el("div", { class: "kpi-value", ...attrs }, value),
    el("div", { class: "kpi-note" }, note));
}

// "ok", "bad" (a check failed) or "warn" (it could not be made) for the checkpoint.
function checkpointState(s) {
  if (s.checkpoint.verified) return "ok";
  const sig = s.checks.find((c) => c.check === "checkpoint signatures");
  return sig && sig.ok === false ? "bad" : "warn";
}

function renderKpis(s, verified) {
  const cp = s.checkpoint;
  const cpState = checkpointState(s);
  const a = s.anchor;
  const covered = s.models.filter((m) => !m.pending).length;
  fill("kpis",
    kpi("Log size", fmt.int(s.log.size),
      s.log.pending ? `${s.log.pending} entries after the checkpoint` : "entries, all checkpointed"),
    kpi("Checkpoint", cp.present ? fmt.int(cp.size) : "—",
      { ok: "signed and cosigned", bad: "verification FAILED", warn: "unverified" }[cpState], {},
      { ok: "good", bad: "alert", warn: "caution" }[cpState]),
    kpi("Witness cosignatures", cp.quorum ? `${cp.valid_cosignatures} / ${s.consortium.witnesses}` : "—",
      cp.quorum ? `quorum ${cp.quorum}` : "no pinned trust", {},
      !cp.quorum ? "caution" : cp.valid_cosignatures >= cp.quorum ? "good" : "alert"),
    kpi("Model versions", `${verified} / ${covered}`, "inclusion verified in your browser", {},
      covered && verified === covered ? "good" : failedCount(s) ? "alert" : ""),
    kpi("Anchored on Ethereum", a.latest ? fmt.int(a.latest.size) : "—",
      a.latest ? (a.consistent ? "latest anchored size, matches the log" : "MISMATCH")
        : "no anchor", {}, a.consistent ? "good" : a.present ? "alert" : ""),
    kpi("Incidents", fmt.int(s.incidents.length), "recorded on the log"));
}

function renderChecks(s) {
  const items = s.checks.map((c) =>
    el("li", { class: c.ok === true ? "ok" : c.ok === false ? "bad" : "warn",
      "data-testid": "check", "data-check": c.check, "data-ok": String(c.ok) },
    el("span", { class: "mark" }, c.ok === true ? "✓" : c.ok === false ? "✗" : "?"),
    el("span", { class: "check-name" }, c.check),
    el("span", { class: "check-detail" }, c.detail)));
  fill("checks", items);
  const banner = document.getElementById("banner");
  if (s.verdict === "verified") {
    banner.className = "banner hidden";
  } else {
    const failed = s.checks.filter((c) => c.ok === false).map((c) => `${c.check}: ${c.detail}`);
    const missing = s.checks.filter((c) => c.ok === null).map((c) => `${c.check}: ${c.detail}`);
    banner.className = `banner ${s.verdict === "failed" ? "bad" : "warn"}`;
    banner.replaceChildren(
      el("strong", {}, s.verdict === "failed" ? "Verification FAILED. " :
        "Unverified: nothing on this page is vouched for by a verified checkpoint. "),
      (failed.length ? failed : missing).join(" · "));
  }
}

function fact(label, value, testid) {
  return [el("dt", {}, label), el("dd", { "data-testid": testid }, value)];
}

function renderConsortium(s) {
  const c = s.consortium;
  const data = c.dataset ? `${c.dataset}${c.dataset_source ? ` — ${c.dataset_source}` : ""}` : "—";
  const records = c.train_records ? `${fmt.int(c.train_records)} training / ${fmt.int(c.test_records)} test records` : null;
  fill("consortium-facts",
    fact("Origin", el("code", {}, fmt.text(c.origin)), "consortium-origin"),
    fact("Members", fmt.text(c.members), "members-count"),
    fact("Witness quorum", c.quorum ? `${c.quorum} of ${c.witnesses} witnesses (ML-DSA-44 required)` : "— (no pinned trust)", "quorum"),
    fact("Dataset", records ? [data, el("div", { class: "muted" }, records)] : data, "dataset"),
    fact("Privacy method", fmt.text(c.privacy), "privacy"),
    fact("Aggregation rule", fmt.text(c.rule), "rule"),
    fact("Contribution proofs", c.proofs === true ? "on (ZK norm bound)" : c.proofs === false ? "off" : "—", "proofs"),
    fact("Rounds", `${c.rounds_logged} on the log${c.rounds_configured ? ` of ${c.rounds_configured} configured` : ""}`, "rounds-count"),
    fact("Pinned trust", el("code", {}, c.trust_file), "trust-file"),
    s.metrics.present ? null : fact("Measurements", el("span", { class: "warn-text" }, s.metrics.error), "metrics-status"));
}

function renderCheckpoint(s) {
  const cp = s.checkpoint;
  if (!cp.present) {
    fill("checkpoint-body", el("p", { class: "warn-text" }, cp.error || "no checkpoint"));
    return;
  }
  const sig = cp.log_signature;
  const cos = cp.cosignatures.map((c) =>
    el("tr", {},
      el("td", {}, fmt.text(c.member)),
      el("td", {}, el("code", { class: "small" }, c.witness)),
      el("td", {}, okBadge(c.ok, "✓ valid", "✗ invalid", "absent"), " ",
        el("span", { class: "muted small" }, c.ok ? "" : c.detail))));
  const cons = cp.consistency;
  fill("checkpoint-body",
    el("dl", { class: "facts" },
      fact("Status", [{ ok: badge("ok", "✓ verified against the pinned trust"),
        bad: badge("bad", "✗ verification failed"), warn: badge("warn", "unverified") }[checkpointState(s)],
        cp.error ? el("div", { class: `${checkpointState(s) === "bad" ? "bad-text" : "warn-text"} small` }, cp.error) : null], "checkpoint-verdict"),
      fact("Tree size", fmt.int(cp.size), "checkpoint-size"),
      fact("Root (SHA-256)", el("code", { class: "hash-full", "data-testid": "checkpoint-root", "data-value": cp.root_hex }, cp.root_hex), "checkpoint-root-dd"),
      fact("Log signature", sig ? [okBadge(sig.ok, "✓ Ed25519 valid", "✗ invalid"), " ",
        el("span", { class: "muted small" }, sig.ok ? sig.key : sig.detail)] : badge("warn", "not checked"), "log-signature"),
      fact("Cosignatures", el("span", { "data-testid": "cosignatures", "data-valid": cp.valid_cosignatures, "data-quorum": cp.quorum ?? "" },
        cp.quorum ? `${cp.valid_cosignatures} valid of ${cp.cosignatures.length} witnesses, quorum ${cp.quorum}` : "not checked"), "cosignatures-dd"),
      fact("History", cons ? [cons.ok === null ? badge("muted", "first seen") : okBadge(cons.ok, "✓ append-only", "✗ rewritten"), " ",
        el("span", { class: "muted small" }, cons.detail)] : "—", "consistency"),
      fact("Root matches the log", okBadge(cp.root_matches_log ?? null, "✓ recomputed tree agrees", "✗ differs"), "root-matches")),
    cos.length ? table(["Member", "Witness", "Cosignature"], cos, { class: "compact" }) : null,
    el("details", {}, el("summary", {}, "Signed note (C2SP checkpoint)"), el("pre", { class: "note" }, cp.note)));
}

function renderMembers(s) {
  const rows = s.members.map((m) => {
    let status = badge("ok", "active");
    if (m.removed) status = badge("bad", `removed: ${m.removed}`);
    else if (m.quarantined_round !== null && m.quarantined_round !== undefined) {
      status = badge("bad", `quarantined (round ${m.quarantined_round})`);
    }
    return el("tr", { "data-testid": "member-row", "data-member": m.member },
      el("td", {}, el("strong", {}, m.member)),
      el("td", { class: "num" }, m.admitted_index ?? "—"),
      el("td", {}, m.identity_fingerprint ? el("code", { class: "small" }, m.identity_fingerprint) : "—"),
      el("td", {}, m.witness_fingerprint ? el("code", { class: "small", title: m.witness }, m.witness_fingerprint) : "—"),
      el("td", {}, m.witness ? okBadge(m.cosigned, "✓ cosigned", "✗ invalid", "absent") : "—"),
      el("td", { class: "num", "data-testid": "member-reputation", "data-value": m.reputation ?? "" },
        fmt.num(m.reputation)),
      el("td", {}, status));
  });
  const threshold = s.reputation && typeof s.reputation.threshold === "number"
    ? el("p", { class: "muted small" }, `Members below a reputation of ${s.reputation.threshold} are quarantined.`) : null;
  fill("members-table",
    table(["Member", { label: "Admitted (log #)", cls: "num" }, "Identity key", "Witness key",
      "Latest checkpoint", { label: "Reputation", cls: "num" }, "Status"], rows),
    threshold);
}

function inclusionCell(m, result, cp) {
  if (m.pending) return badge("muted", "pending — after the latest checkpoint", { "data-state": "pending" });
  if (!cp.verified) return badge("warn", "not checked — checkpoint unverified", { "data-state": "unchecked" });
  if (!result) return badge("muted", "checking…", { "data-state": "checking" });
  return badge(result.ok ? "ok" : "bad wrap", result.ok ? result.detail : `✗ NOT verified: ${result.detail}`,
    { "data-state": result.ok ? "ok" : "fail" });
}

function renderModels(s) {
  const cp = s.checkpoint;
  const rows = s.models.map((m) => {
    const result = inclusion.get(proofKey(m, cp));
    const cell = el("td", { "data-testid": "model-inclusion" }, inclusionCell(m, result, cp));
    return el("tr", { "data-testid": "model-row", "data-index": m.index, "data-hash": m.model_hash },
      el("td", { class: "num" }, m.version),
      el("td", { class: "num" }, m.index),
      el("td", {}, hash(m.model_hash, "model-hash", 16), m.rolled_back ? badge("bad", `rolled back: ${m.rolled_back}`) : null),
      el("td", { title: m.server_inclusion.detail },
        okBadge(m.server_inclusion.ok, "✓ included", "✗ not included", "—"),
        m.server_inclusion.ok === null ? el("span", { class: "muted small" }, ` ${m.server_inclusion.detail}`) : null),
      cell);
  });
  fill("models-table", rows.length
    ? table([{ label: "Version", cls: "num" }, { label: "Log #", cls: "num" }, "Model hash",
      "Server check", "Inclusion in the log"], rows)
    : el("p", { class: "muted" }, "No model version on the log yet."));
}

function renderRounds(s) {
  const rows = s.rounds.map((r) =>
    el("tr", { "data-testid": "round-row", "data-round": r.round },
      el("td", { class: "num" }, r.round),
      el("td", { class: "num" }, r.index),
      el("td", {}, el("span", { title: r.participants.join(", ") }, `${r.participants.length} members`),
        r.rejected && r.rejected.length ? badge("bad", `rejected: ${r.rejected.join(", ")}`) : null),
      el("td", {}, r.rule),
      el("td", {}, r.privacy),
      el("td", {}, hash(r.model_hash, "round-model-hash")),
      el("td", { class: "num" }, fmt.pct(r.accuracy)),
      el("td", { class: "num" }, fmt.num(r.f1)),
      el("td", {}, r.proofs_verified === true ? badge("ok", "✓ all proofs") : r.proofs_verified === false ? badge("warn", "none") : "—"),
      el("td", {}, r.pending ? badge("muted", "pending") : badge("ok", "checkpointed"))));
  fill("rounds-table", rows.length
    ? table([{ label: "Round", cls: "num" }, { label: "Log #", cls: "num" }, "Participants", "Rule",
      "Privacy", "Model hash", { label: "Accuracy", cls: "num" }, { label: "F1", cls: "num" },
      "ZK proofs", "Log"], rows)
    : el("p", { class: "muted" }, "No round on the log yet."));
}

function renderAnchor(s) {
  const a = s.anchor;
  if (!a.present) {
    fill("anchor-body", el("p", { class: a.consistent === false ? "bad-text" : "muted" }, a.detail));
    return;
  }
  const l = a.latest;
  const all = a.records.map((r) =>
    el("tr", {}, el("td", { class: "num" }, r.size), el("td", {}, hash(r.root, null)),
      el("td", {}, hash(r.tx, null)), el("td", {}, okBadge(r.matches_log, "✓", "✗"))));
  fill("anchor-body",
    el("dl", { class: "facts" },
      fact("Contract", el("code", { "data-testid": "anchor-contract", "data-value": a.contract }, a.contract), "anchor-contract-dd"),
      fact("Chain", fmt.text(a.chain), "anchor-chain"),
      fact("Pinned in trust", okBadge(a.contract_matches_trust, "✓ same contract", "✗ different contract", "no anchor pinned"), "anchor-pinned"),
      fact("Latest anchored size", el("span", { "data-testid": "anchor-size" }, l ? fmt.int(l.size) : "—"), "anchor-size-dd"),
      fact("Anchored root", l ? el("code", { class: "hash-full", "data-testid": "anchor-root", "data-value": l.root }, l.root) : "—", "anchor-root-dd"),
      fact("Transaction", l ? el("code", { class: "hash-full" }, l.tx) : "—", "anchor-tx"),
      fact("Matches the log", el("span", { "data-testid": "anchor-match", "data-value": String(a.consistent) },
        okBadge(a.consistent, "✓ the log's root at that size is the anchored root", "✗ MISMATCH")), "anchor-match-dd")),
    el("p", { class: "muted small" }, `${a.detail}. Read from anchor.json, the anchor record the demo keeps; the portal does not query a chain.`),
    all.length > 1 ? el("details", {}, el("summary", {}, `All ${all.length} anchors`),
      table([{ label: "Size", cls: "num" }, "Root", "Transaction", "Matches"], all, { class: "compact" })) : null);
}

function renderIncidents(s) {
  const rows = s.incidents.map((i) =>
    el("tr", { "data-testid": "incident-row" },
      el("td", { class: "num" }, i.index), el("td", { class: "num" }, i.round),
      el("td", {}, i.member), el("td", {}, badge("bad", i.kind)),
      el("td", { class: "detail" }, i.detail), el("td", {}, hash(i.evidence_hash, null))));
  fill("incidents-body",
    el("p", {}, el("span", { class: "big", "data-testid": "incident-count" }, String(s.incidents.length)),
      s.incidents.length === 1 ? " incident recorded" : " incidents recorded",
      s.incidents.length ? "" : " — no member broke the protocol in the consortium's rounds."),
    rows.length ? el("div", { class: "scroll" }, table([{ label: "Log #", cls: "num" }, { label: "Round", cls: "num" },
      "Member", "Kind", "Detail", "Evidence"], rows)) : null);
}

function renderIntel(s) {
  const x = s.intel;
  if (!x) {
    fill("intel-body", el("p", { class: "muted" }, s.metrics.present
      ? "No collective-defence measurement in metrics.json." : s.metrics.error));
    return;
  }
  fill("intel-body",
    el("div", { class: "minis" },
      mini(`Detection of “${fmt.text(x.family)}”`, `${fmt.pct(x.unseen_family_detection_before)} → ${fmt.pct(x.unseen_family_detection_after)}`,
        "a family no other member had seen, before → after the shared signature", "intel-detection"),
      mini("Propagation latency", `${fmt.ms(x.p50_ms)} / ${fmt.ms(x.p99_ms)}`,
        `p50 / p99 to every member; a polled hub: ${fmt.ms(x.hub_p50_ms)} / ${fmt.ms(x.hub_p99_ms)}`, "intel-latency"),
      mini("Feed objects", fmt.int(x.feed_objects), `${fmt.pct(x.anonymized_share)} anonymized (hub: ${fmt.pct(x.hub_anonymized_share)})`, "intel-objects"),
      mini("Objects naming a member", fmt.int(x.disclosures), `in the shared feed; a MISP-style hub: ${fmt.int(x.hub_disclosures)} of ${fmt.int(x.hub_objects)}`, "intel-disclosures"),
      mini("False positives on normal traffic", `${fmt.pct(x.normal_fpr_before)} → ${fmt.pct(x.normal_fpr_after)}`, "before → after", "intel-fpr")),
    x.pattern ? el("div", {}, el("div", { class: "muted small" }, "Shared STIX 2.1 pattern"), el("pre", { class: "note" }, x.pattern)) : null);
}

function mini(label, value, note, testid) {
  return el("div", { class: "mini" }, el("div", { class: "kpi-label" }, label),
    el("div", { class: "mini-value", "data-testid": testid }, value), el("div", { class: "kpi-note" }, note));
}

function renderAttack(s) {
  const u = s.under_attack;
  if (!u) {
    fill("attack-body", el("p", { class: "muted" }, s.metrics.present
      ? "No attack scenario in metrics.json." : s.metrics.error));
    return;
  }
  const names = { clean: "clean (no attacker)", fedavg: "attacked, plain FedAvg", defended: "attacked, defended" };
  const rows = u.runs.map((r) => el("tr", { "data-testid": "attack-row", "data-run": r.name },
    el("td", {}, el("strong", {}, names[r.name] || r.name)),
    el("td", { class: "num" }, fmt.text(r.members)),
    el("td", { class: "num" }, fmt.num(r.f1)),
    el("td", { class: "num" }, fmt.pct(r.accuracy)),
    el("td", { class: "num" }, el("span", { class: (r.backdoor_success ?? 0) > 0.05 ? "bad-text" : "" }, fmt.pct(r.backdoor_success))),
    el("td", {}, Object.entries(r.quarantined || {}).map(([m, rd]) => `${m} (round ${rd})`).join(", ") || "—"),
    el("td", {}, Object.entries(r.incidents_by_kind || {}).map(([k, n]) => `${k} × ${n}`).join(", ") || "—")));
  const mal = u.malicious || {};
  fill("attack-body",
    el("p", {}, el("strong", {}, "Scenario: "), fmt.text(u.scenario), "."),
    el("p", { class: "muted small" }, `Malicious: backdoor ${fmt.text(mal.backdoor)}, Sybil ${(mal.sybil || []).join(", ") || "—"}. Defence: ${fmt.text(u.defence)}.`),
    el("div", { class: "scroll" }, table(["Run", { label: "Members", cls: "num" }, { label: "F1", cls: "num" },
      { label: "Accuracy", cls: "num" }, { label: "Backdoor success", cls: "num" }, "Quarantined", "Incidents"], rows)));
}

// ---------------------------------------------------------------------------------------------
// The refresh loop
// ---------------------------------------------------------------------------------------------
const inclusion = new Map(); // proofKey -> {ok, detail}: a proof checked once stays checked

function proofKey(m, cp) {
  return `${m.index}@${cp.size}:${cp.root_hex}:${m.model_hash}`;
}

function countVerified(s) {
  return s.models.filter((m) => !m.pending && (inclusion.get(proofKey(m, s.checkpoint)) || {}).ok).length;
}

function failedCount(s) {
  return s.models.filter((m) => !m.pending && (inclusion.get(proofKey(m, s.checkpoint)) || {}).ok === false).length;
}

function renderInclusionSummary(s, done) {
  const target = document.querySelector('[data-testid="inclusion-summary"]');
  const covered = s.models.filter((m) => !m.pending);
  const verified = countVerified(s);
  const failed = failedCount(s);
  if (!s.checkpoint.verified) {
    target.textContent = "inclusion not checked: no verified checkpoint";
  } else if (!done) {
    target.textContent = `checking inclusion in your browser… ${verified} / ${covered.length}`;
  } else if (failed) {
    target.textContent = `${failed} of ${covered.length} model versions FAILED the inclusion check`;
  } else {
    target.textContent = `${verified} of ${covered.length} model versions verified in your browser`;
  }
  target.className = `sub ${failed ? "bad-text" : done && covered.length && verified === covered.length ? "ok-text" : ""}`;
  target.dataset.state = done ? "done" : "checking";
  target.dataset.verified = String(verified);
  target.dataset.failed = String(failed);
}

// Each section renders on its own: one malformed section (metrics.json is free-form) must not
// take the rest of the page, and above all the verification results, down with it.
const SECTIONS = [
  [renderHeader, null], [(s) => renderKpis(s, countVerified(s)), "kpis"], [renderChecks, "checks"],
  [renderConsortium, "consortium-facts"], [renderCheckpoint, "checkpoint-body"],
  [renderMembers, "members-table"], [renderModels, "models-table"], [renderRounds, "rounds-table"],
  [renderAnchor, "anchor-body"], [renderIncidents, "incidents-body"], [renderIntel, "intel-body"],
  [renderAttack, "attack-body"],
];

function render(s) {
  for (const [fn, target] of SECTIONS) {
    try {
      fn(s);
    } catch (e) {
      if (target) fill(target, el("p", { class: "bad-text" }, `Cannot display this section: ${e.message}`));
    }
  }
}

async function verifyAll(s) {
  const cp = s.checkpoint;
  const todo = cp.verified ? s.models.filter((m) => !m.pending && !inclusion.has(proofKey(m, cp))) : [];
  renderInclusionSummary(s, todo.length === 0);
  let next = 0;
  async function worker() {
    while (next < todo.length) {
      const m = todo[next++];
      let result;
      try {
        result = await verifyModel(m, cp);
      } catch (e) {
        result = { ok: false, detail: `could not check: ${e.message}` };
      }
      inclusion.set(proofKey(m, cp), result);
      const row = document.querySelector(`[data-testid="model-row"][data-index="${m.index}"] [data-testid="model-inclusion"]`);
      if (row) row.replaceChildren(inclusionCell(m, result, cp));
    }
  }
  await Promise.all(Array.from({ length: Math.min(PROOF_CONCURRENCY, todo.length) }, worker));
  renderKpis(s, countVerified(s));
  renderInclusionSummary(s, true);
}

function showBanner(kind, text) {
  const banner = document.getElementById("banner");
  banner.className = `banner ${kind}`;
  banner.textContent = text;
}

async function tick() {
  let delay = DEFAULT_REFRESH_S;
  try {
    const res = await fetch("/api/summary", { cache: "no-store" });
    const s = await res.json();
    if (!res.ok) throw new Error(s.error || `HTTP ${res.status}`);
    delay = s.refresh_seconds || DEFAULT_REFRESH_S;
    render(s);
    await verifyAll(s);
  } catch (e) {
    showBanner("bad", `Cannot read the portal's API: ${e.message}. Retrying.`);
  } finally {
    setTimeout(tick, delay * 1000);
  }
}

if (!(window.crypto && crypto.subtle)) {
  showBanner("bad", "WebCrypto is unavailable (the page must be served from localhost or over HTTPS): inclusion cannot be verified in this browser.");
}
tick();
