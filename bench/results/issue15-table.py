#!/usr/bin/env python3
"""Tabulates issue 15's target table from the JSON lines of
bench/results/2026-12-03-issue15-v2.sh (several files: every run is listed)."""
import json
import sys
from collections import defaultdict

runs = defaultdict(list)
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        row = json.loads(line)
        r = row["result"]
        if r is None:
            continue
        a = row["args"]
        if "--soak-seconds" in a:
            key = "soak"
        elif "--split-process" in a:
            key = "split"
        elif "--backlog" in a:
            key = "backlog"
        else:
            key = f"{r['mode']} B{r['batch']} P{r['partitions']}"
        runs[(r["backend"], key)].append(r)


def vals(backend, key, field):
    return [r.get(field) for r in runs[(backend, key)]]


def fmt(xs, digits=2):
    xs = [x for x in xs if x is not None]
    return " / ".join(f"{x:,.{digits}f}" for x in xs) if xs else "–"


def ratio(backend, num, den, field="e2e_msgs_per_sec"):
    n, d = vals(backend, num, field), vals(backend, den, field)
    return " / ".join(f"{a / b:.2f}" for a, b in zip(n, d) if a and b) or "–"


def integrity(backend):
    bad = sum(
        (r.get("lost") or 0) + (r.get("duplicates") or 0) + (r.get("order_violations") or 0)
        for (b, _), rs in runs.items() if b == backend for r in rs
    )
    return "0" if bad == 0 else str(bad)


print("| measure | postgres | mysql | sqlite |")
print("|---|---|---|---|")
rows = [
    ("B = 100 e2e / baseline", lambda b: fmt(vals(b, "leased B100 P4", "e2e_vs_baseline"))),
    ("B = 1 e2e / baseline", lambda b: fmt(vals(b, "leased B1 P4", "e2e_vs_baseline"))),
    ("row writes per message (soak, B = 100)", lambda b: fmt(vals(b, "soak", "row_writes_per_msg"))),
    ("WAL bytes per message / baseline WAL per row", lambda b: fmt(vals(b, "soak", "wal_vs_baseline"))),
    ("transactional / leased e2e, B = 100", lambda b: ratio(b, "transactional B100 P4", "leased B100 P4")),
    ("transactional / leased e2e, B = 1", lambda b: ratio(b, "transactional B1 P4", "leased B1 P4")),
    ("P = 1,024 / P = 4 e2e, B = 100", lambda b: ratio(b, "leased B100 P1024", "leased B100 P4")),
    ("cross-process p50 / p99 ms at 200 msg/s", lambda b: " ; ".join(
        f"{r['latency_p50_ms']:.1f} / {r['latency_p99_ms']:.1f}" for r in runs[(b, "split")]) or "–"),
    ("peak RSS MiB draining 1M backlog", lambda b: fmt(vals(b, "backlog", "drain_peak_rss_mib"), 1)),
    ("e2e msg/s leased B = 100 (baseline rows/s)", lambda b: " / ".join(
        f"{r['e2e_msgs_per_sec']:,.0f} ({r['baseline_rows_per_sec']:,.0f})" for r in runs[(b, "leased B100 P4")]) or "–"),
    ("e2e msg/s leased B = 1 (baseline rows/s)", lambda b: " / ".join(
        f"{r['e2e_msgs_per_sec']:,.0f} ({r['baseline_rows_per_sec']:,.0f})" for r in runs[(b, "leased B1 P4")]) or "–"),
    ("lost + duplicates + order violations, all runs", integrity),
]
for name, f in rows:
    print(f"| {name} | " + " | ".join(f(b) for b in ["postgres", "mysql", "sqlite"]) + " |")
