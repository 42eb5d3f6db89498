#!/usr/bin/env python3
"""Markdown tables from bench/results/<date>.jsonl (written by run-all.sh).

    bench/report.py bench/results/2026-01-01.jsonl [--session ID ...]

Without --session, the last session in the file. With several, each
configuration's runs come from the last of them that ran it. For each configuration
(label) it keeps the median run by the label's key (the middle one of the
sorted runs), shows the spread of that key over the runs, and checks the
target of BENCHMARKS.md.
"""

import argparse
import json
import sys
from collections import OrderedDict

BACKENDS = ["postgres", "mysql", "sqlite"]


def load(path, sessions):
    runs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                runs.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if not sessions:
        sessions = [runs[-1]["session"]] if runs else []
    return [r for r in runs if r.get("session") in sessions], sessions


def clean_runs(runs):
    """The runs no compile overlapped (foreign_busy_s == 0), if there are at
    least 3 of them (or as many as were planned in a 1-run session);
    otherwise all runs."""
    clean = [r for r in runs if r.get("foreign_busy_s", 0) == 0]
    return clean if len(clean) >= min(3, len(runs)) else runs


def median_run(runs):
    """The middle run by its key over the clean runs; None if none has the key."""
    good = [r for r in clean_runs(runs) if isinstance(r.get(r["key"]), (int, float))]
    if not good:
        return None
    good.sort(key=lambda r: r[r["key"]])
    return good[len(good) // 2]


def fmt(x, digits=0):
    if x is None:
        return "–"
    if isinstance(x, float) and digits:
        return f"{x:,.{digits}f}"
    return f"{x:,.0f}" if isinstance(x, (int, float)) else str(x)


def lat(r):
    if r.get("latency_p50_ms") is None:
        return "–"
    return "{:.1f} / {:.1f} / {:.1f}".format(
        r["latency_p50_ms"], r["latency_p95_ms"], r["latency_p99_ms"]
    )


def target(label, r, med):
    """(target text, met: True/False/None, note)."""
    parts = label.split("/")
    be, kind = parts[0], parts[1]
    variant = parts[2] if len(parts) > 2 else ""

    def other(lbl, key="e2e_msgs_per_sec"):
        o = med.get(lbl)
        return o.get(key) if o else None

    if kind == "leased":
        goal = 0.75 if variant.startswith("B1") and not variant.startswith("B100") else 0.30
        v = r.get("e2e_vs_baseline")
        return f"e2e/baseline ≥ {goal:.2f}", (v >= goal if v is not None else None), ""
    if kind == "transactional":
        leased = other(f"{be}/leased/{variant}")
        v = r.get("e2e_msgs_per_sec")
        if leased and v is not None:
            ratio = v / leased
            return "≥ 70% of leased e2e", ratio >= 0.70, f"{ratio:.0%} of leased"
        return "≥ 70% of leased e2e", None, "no leased run"
    if kind == "rate200":
        p50, p99 = r.get("latency_p50_ms"), r.get("latency_p99_ms")
        ok = p50 is not None and p50 < 3 and p99 < 10
        return "p50 < 3 ms, p99 < 10 ms", ok, ""
    if kind == "split-rate200":
        p50, p99 = r.get("latency_p50_ms"), r.get("latency_p99_ms")
        if be == "postgres":
            ok = p50 is not None and p50 < 3 and p99 < 10
            return "p50 < 3 ms, p99 < 10 ms", ok, ""
        poll = 50 if r.get("profile") == "low_latency" else 500
        return f"p99 < {poll} + 5 ms (poll)", (p99 is not None and p99 < poll + 5), ""
    if kind == "N":
        if variant == "1M":
            base = other(f"{be}/N/100k")
            v = r.get("e2e_msgs_per_sec")
            if base and v is not None:
                return "1M ≥ 90% of 100k", v / base >= 0.90, f"{v / base:.0%} of 100k"
            return "1M ≥ 90% of 100k", None, ""
        return "", None, ""
    if kind == "P":
        if variant == "1024":
            base = other(f"{be}/P/4")
            v = r.get("e2e_msgs_per_sec")
            if base and v is not None:
                return "P=1024 ≥ 70% of P=4", v / base >= 0.70, f"{v / base:.0%} of P=4"
            return "P=1024 ≥ 70% of P=4", None, ""
        return "", None, ""
    if kind.startswith("backlog"):
        rss = r.get("consumer_peak_rss_mib") if r.get("split_process") else r.get("peak_rss_mib")
        return "peak RSS < 100 MiB", (rss is not None and rss < 100), ""
    if kind == "idle":
        v = r.get("idle_db_statements_per_sec")
        counter = r.get("idle_db_counter") or ""
        if v is None and r.get("idle_client_statements_per_sec") is not None:
            # SQLite: no server to count on; the outbox pool's own statements.
            v = r["idle_client_statements_per_sec"]
            counter = "statements sent by the outbox's pool (SQLite has no server counter)"
        return "< 20 statements/s", (v is not None and v < 20), counter
    return "", None, ""


def integrity(runs):
    bad = []
    for r in runs:
        if r.get("error"):
            bad.append(f"run {r['run']}: error")
            continue
        if r.get("lost") or r.get("order_violations") or r.get("timed_out"):
            bad.append(f"run {r['run']}: lost {r.get('lost')}, order {r.get('order_violations')}")
        elif r.get("mode") == "transactional" and r.get("duplicates"):
            bad.append(f"run {r['run']}: {r['duplicates']} duplicates")
    return "; ".join(bad) if bad else "ok"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl")
    ap.add_argument("--session", action="append", default=[])
    a = ap.parse_args()
    runs, sessions = load(a.jsonl, a.session)
    # With several sessions, a label's runs come from the last session that
    # ran it (a re-run of noisy configurations replaces them).
    last_session = {}
    for r in runs:
        last_session[r["label"]] = r["session"]
    by_label = OrderedDict()
    for r in runs:
        if r["session"] == last_session[r["label"]]:
            by_label.setdefault(r["label"], []).append(r)
    runs = [r for rs in by_label.values() for r in rs]
    med = {label: median_run(rs) for label, rs in by_label.items()}
    med = {k: v for k, v in med.items() if v is not None}

    for session in sessions:
        rs = [r for r in runs if r["session"] == session]
        if rs:
            print(f"Session {session}: git {rs[0].get('git_head')} (uncommitted library diff: {rs[0].get('git_diff')}), "
                  f"{len(rs)} runs of {len({r['label'] for r in rs})} configurations"
                  + ("; QUICK (1 run, N/10)" if rs[0].get("quick") else ""))
    for be in BACKENDS:
        labels = [l for l in by_label if l.split("/")[0] == be]
        if not labels:
            continue
        print(f"\n### {be}\n")
        print("| configuration | runs used/all | key (median; min–max) | e2e msg/s | drain msg/s | baseline rows/s | e2e/baseline "
              "| p50 / p95 / p99 ms | stmts/msg | peak RSS MiB | target | met | note | integrity |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for label in labels:
            rs = by_label[label]
            r = med.get(label)
            if r is None:
                print(f"| {label} | {len(rs)} | failed | | | | | | | | | | | {integrity(rs)} |")
                continue
            key = r["key"]
            used = clean_runs(rs)
            vals = sorted(x[key] for x in used if isinstance(x.get(key), (int, float)))
            digits = 1 if key in ("latency_p50_ms", "idle_db_statements_per_sec", "idle_client_statements_per_sec") else 0
            spread = ""
            if len(vals) > 1:
                rel = (vals[-1] - vals[0]) / r[key] if r[key] else 0
                spread = f"; {fmt(vals[0], digits)}–{fmt(vals[-1], digits)} (±{rel / 2:.0%})"
            keytxt = f"{key.replace('_msgs_per_sec', '').replace('_ms', ' ms')} = {fmt(r[key], digits)}{spread}"
            rss = fmt(r.get("peak_rss_mib"), 1)
            if r.get("consumer_peak_rss_mib") is not None:
                rss += f" (child {r['consumer_peak_rss_mib']:.1f})"
            if r.get("bench_tracking_mib"):
                rss += f", bench {r['bench_tracking_mib']:.1f}"
            t, met, note = target(label, r, med)
            ratios = sorted(x["e2e_vs_baseline"] for x in used if x.get("e2e_vs_baseline") is not None)
            if len(ratios) > 1:
                note = (note + "; " if note else "") + f"e2e/baseline runs {ratios[0]:.2f}–{ratios[-1]:.2f}"
            mark = "–" if met is None else ("yes" if met else "**no**")
            vs = r.get("e2e_vs_baseline")
            print(
                f"| {label} | {len(used)}/{len(rs)} | {keytxt} | {fmt(r.get('e2e_msgs_per_sec'))} | {fmt(r.get('drain_msgs_per_sec'))} "
                f"| {fmt(r.get('baseline_rows_per_sec'))} | {'–' if vs is None else f'{vs:.2f}'} | {lat(r)} "
                f"| {fmt(r.get('client_statements_per_msg'), 2)} | {rss} | {t} | {mark} | {note} | {integrity(rs)} |"
            )
    noisy = [r for r in runs if r.get("foreign_busy_s", 0) > 0]
    if noisy:
        print(f"\n{len(noisy)} of {len(runs)} runs had a compiler process alive for part of the run "
              f"(foreign_busy_s > 0); they are left out of the medians where 3 clean runs exist: "
              + ", ".join(sorted({r['label'] for r in noisy})))


if __name__ == "__main__":
    sys.exit(main())
