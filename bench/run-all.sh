#!/usr/bin/env bash
# Runs the benchmark table of BENCHMARKS.md: every configuration 3 times,
# the median kept (by e2e_msgs_per_sec; latency p50 for paced runs; drain
# rate for the backlog; statements/s for idle), each JSON line appended to
# bench/results/<date>.jsonl, then one markdown table per backend.
#
#   bench/run-all.sh                  # the full table, 3 runs each
#   bench/run-all.sh --quick          # 1 run each, N/10 (idle 5 s)
#   bench/run-all.sh --only 'postgres/(leased|transactional)'   # a subset (regex on labels)
#   bench/run-all.sh --runs 5         # more runs per configuration
#   bench/run-all.sh --list           # print the configurations and exit
#
# Shape unless stated: leased mode, N = 100,000, P = 4 partitions,
# K = 4 producers, S = 256-byte payloads, --baseline on throughput runs.
#
# Noise: this box has 2 cores and is shared with compiles. Before each run
# the script waits (up to 5 min) for the CPU to be quiet (<25% busy over 2 s
# and no rustc/cc/ld running); during each run it counts the seconds a
# compiler process was alive (`foreign_busy_s` in the JSON). A configuration
# whose runs spread by more than 20% around the median, or that ran next to a
# compile, gets 2 more runs (once); the median is over all its runs.
#
# Environment: PG_URL, MYSQL_URL (defaults: the bench's own), BENCH_BIN (a
# prebuilt binary instead of building).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=0
RUNS=3
ONLY=""
LIST=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1; RUNS=1; shift ;;
        --runs) RUNS="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --list) LIST=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "run-all.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- the table
# label | key the median is taken by | arguments
CONFIGS=()
add() { CONFIGS+=("$1|$2|$3"); }

for be in postgres mysql sqlite; do
    add "$be/leased/B1"           e2e_msgs_per_sec "--backend $be --mode leased --batch 1 --baseline"
    add "$be/leased/B100"         e2e_msgs_per_sec "--backend $be --mode leased --batch 100 --baseline"
    add "$be/transactional/B1"    e2e_msgs_per_sec "--backend $be --mode transactional --batch 1 --baseline"
    add "$be/transactional/B100"  e2e_msgs_per_sec "--backend $be --mode transactional --batch 100 --baseline"
done
# The same B=1 shape with the pool pinging only connections idle 30 s (sea-orm's
# default pings on every acquire: one more round trip per transaction, for
# the baseline too).
for be in postgres mysql sqlite; do
    add "$be/leased/B1-pingidle"  e2e_msgs_per_sec "--backend $be --mode leased --batch 1 --baseline --ping-idle-secs 30"
done
for be in postgres mysql sqlite; do
    add "$be/rate200/default"     latency_p50_ms "--backend $be --rate 200 --batch 1 --messages 6000"
    add "$be/rate200/low_latency" latency_p50_ms "--backend $be --rate 200 --batch 1 --messages 6000 --profile low_latency"
done
add "postgres/split-rate200/default"   latency_p50_ms "--backend postgres --split-process --rate 200 --batch 1 --messages 6000"
add "postgres/split-rate200/low_latency" latency_p50_ms "--backend postgres --split-process --rate 200 --batch 1 --messages 6000 --profile low_latency"
add "mysql/split-rate200/low_latency"  latency_p50_ms "--backend mysql --split-process --rate 200 --batch 1 --messages 6000 --profile low_latency"
add "sqlite/split-rate200/low_latency" latency_p50_ms "--backend sqlite --split-process --rate 200 --batch 1 --messages 6000 --profile low_latency"
for be in postgres mysql sqlite; do
    add "$be/N/10k"   e2e_msgs_per_sec "--backend $be --batch 100 --messages 10000 --baseline"
    add "$be/N/100k"  e2e_msgs_per_sec "--backend $be --batch 100 --messages 100000 --baseline"
    add "$be/N/1M"    e2e_msgs_per_sec "--backend $be --batch 100 --messages 1000000 --baseline"
done
for be in postgres mysql sqlite; do
    add "$be/P/4"     e2e_msgs_per_sec "--backend $be --batch 100 --partitions 4 --baseline"
    add "$be/P/64"    e2e_msgs_per_sec "--backend $be --batch 100 --partitions 64 --baseline"
    add "$be/P/1024"  e2e_msgs_per_sec "--backend $be --batch 100 --partitions 1024 --baseline"
done
add "postgres/backlog/1M"              drain_msgs_per_sec "--backend postgres --backlog --messages 1000000 --batch 1000"
add "postgres/backlog-split/1M"        drain_msgs_per_sec "--backend postgres --backlog --split-process --messages 1000000 --batch 1000"
add "mysql/backlog/1M"                 drain_msgs_per_sec "--backend mysql --backlog --messages 1000000 --batch 1000"
add "sqlite/backlog/1M"                drain_msgs_per_sec "--backend sqlite --backlog --messages 1000000 --batch 1000"
for be in postgres mysql; do
    add "$be/idle/P1024" idle_db_statements_per_sec "--backend $be --idle-seconds 20 --partitions 1024"
done
# SQLite has no server to count on: the statements the outbox's pool sent.
add "sqlite/idle/P1024" idle_client_statements_per_sec "--backend sqlite --idle-seconds 20 --partitions 1024"

# In quick mode: N/10 (default N is 100,000), idle windows of 5 s.
adjust() {
    local args="$1"
    if [[ $QUICK == 1 ]]; then
        if [[ $args == *"--idle-seconds"* ]]; then
            args=$(sed -E 's/--idle-seconds [0-9]+/--idle-seconds 5/' <<<"$args")
        elif [[ $args =~ --messages\ ([0-9]+) ]]; then
            local n=${BASH_REMATCH[1]}
            args=$(sed -E "s/--messages $n/--messages $((n / 10))/" <<<"$args")
        else
            args="$args --messages 10000"
        fi
    elif [[ $args != *"--messages"* && $args != *"--idle-seconds"* ]]; then
        args="$args --messages 100000"
    fi
    echo "$args"
}

if [[ $LIST == 1 ]]; then
    for c in "${CONFIGS[@]}"; do
        IFS='|' read -r label key args <<<"$c"
        [[ -n $ONLY && ! $label =~ $ONLY ]] && continue
        printf '%-36s %-28s %s\n' "$label" "$key" "$(adjust "$args")"
    done
    exit 0
fi

# ---------------------------------------------------------------- setup
SESSION=$(date +%Y%m%dT%H%M%S)
DATE=$(date +%F)
OUT="$ROOT/bench/results/$DATE.jsonl"
LOGS="$ROOT/bench/results/logs/$SESSION"
mkdir -p "$LOGS"

if [[ -z ${BENCH_BIN:-} ]]; then
    echo "run-all.sh: cargo build --release -p outbox-bench" >&2
    cargo build --release -p outbox-bench >&2
    BENCH_BIN="$ROOT/target/release/outbox-bench"
fi
# Run a private copy: a rebuild by someone else must not swap the binary
# under a running series (the split-process child re-executes it).
BIN="${TMPDIR:-/tmp}/outbox-bench-$SESSION"
cp "$BENCH_BIN" "$BIN"
trap 'rm -f "$BIN"' EXIT

GIT_HEAD=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The library sources the binary was built from: HEAD plus a hash of any
# uncommitted change outside the bench itself.
GIT_DIFF=$(git diff HEAD -- . ':(exclude)bench' ':(exclude)BENCHMARKS.md' ':(exclude)outbox-bench' 2>/dev/null | sha1sum | cut -c1-10)
[[ $GIT_DIFF == da39a3ee5e ]] && GIT_DIFF=clean
export SESSION GIT_HEAD GIT_DIFF

URL_ARGS() {
    case "$1" in
        *--backend\ postgres*) [[ -n ${PG_URL:-} ]] && echo "--database-url $PG_URL" ;;
        *--backend\ mysql*) [[ -n ${MYSQL_URL:-} ]] && echo "--database-url $MYSQL_URL" ;;
    esac
    return 0
}

# Processes that mean someone else is compiling (or running cargo).
compilers_running() {
    ps -eo comm= | awk '$1 ~ /^(rustc|cargo|cc1|cc1plus|cc|ld|ld\.lld|rust-lld|clippy-driver|rustdoc|rustfmt)$/ {n++} END {print n + 0}'
}

cpu_busy_pct() { # over 2 s, iowait counted as idle
    local a b
    a=($(head -1 /proc/stat))
    sleep 2
    b=($(head -1 /proc/stat))
    python3 - "${a[*]}" "${b[*]}" <<'EOF'
import sys
a = list(map(int, sys.argv[1].split()[1:])); b = list(map(int, sys.argv[2].split()[1:]))
d = [y - x for x, y in zip(a, b)]
total = sum(d[:8]) or 1
idle = d[3] + d[4]
print(round(100.0 * (total - idle) / total, 1))
EOF
}

# Waits until the machine is quiet; sets BUSY_BEFORE and WAITED_S.
wait_quiet() {
    local start=$SECONDS busy n
    while :; do
        busy=$(cpu_busy_pct)
        n=$(compilers_running)
        if python3 -c "import sys; sys.exit(0 if $busy < 25 and $n == 0 else 1)"; then
            break
        fi
        if (( SECONDS - start > 300 )); then
            echo "run-all.sh: still busy after 5 min (cpu $busy%, $n compiler processes); running anyway" >&2
            break
        fi
        echo "run-all.sh: waiting for a quiet machine (cpu $busy%, $n compiler processes)" >&2
        sleep 8
    done
    BUSY_BEFORE=$busy
    WAITED_S=$(( SECONDS - start ))
}

# One run of one configuration; appends one JSON line to $OUT.
run_one() {
    local label="$1" key="$2" args="$3" run="$4"
    local log="$LOGS/${label//\//_}-$run.log" out="$LOGS/${label//\//_}-$run.json"
    wait_quiet
    local load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    # Count seconds with a compiler process alive during the run.
    local sampler_file
    sampler_file=$(mktemp)
    ( while :; do compilers_running >>"$sampler_file"; sleep 1; done ) &
    local sampler=$!
    local started=$SECONDS rc=0
    # shellcheck disable=SC2046
    "$BIN" $args $(URL_ARGS "$args") >"$out" 2>"$log" || rc=$?
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    local foreign
    foreign=$(awk '$1 > 0 {n++} END {print n + 0}' "$sampler_file")
    rm -f "$sampler_file"
    LABEL="$label" KEY="$key" ARGS="$args" RUN="$run" RC="$rc" LOAD1="$load1" \
    BUSY_BEFORE="$BUSY_BEFORE" WAITED_S="$WAITED_S" FOREIGN="$foreign" \
    ELAPSED=$(( SECONDS - started )) QUICK="$QUICK" LOG="$log" \
    python3 - "$out" >>"$OUT" <<'EOF'
import json, os, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
record = {}
try:
    record = json.loads(lines[-1])
except Exception:
    tail = open(os.environ["LOG"]).read().splitlines()[-3:]
    record = {"error": " | ".join(tail)}
meta = {
    "label": os.environ["LABEL"], "key": os.environ["KEY"], "run": int(os.environ["RUN"]),
    "session": os.environ["SESSION"], "quick": os.environ["QUICK"] == "1",
    "git_head": os.environ["GIT_HEAD"], "git_diff": os.environ["GIT_DIFF"],
    "args": os.environ["ARGS"], "rc": int(os.environ["RC"]),
    "load1_before": float(os.environ["LOAD1"]), "busy_before_pct": float(os.environ["BUSY_BEFORE"]),
    "waited_s": int(os.environ["WAITED_S"]), "foreign_busy_s": int(os.environ["FOREIGN"]),
    "elapsed_s": int(os.environ["ELAPSED"]),
}
print(json.dumps({**meta, **record}))
EOF
    local summary
    summary=$(tail -n 1 "$OUT" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
print("%s=%s rc=%s foreign_busy_s=%s elapsed=%ss %s" % (d["key"], d.get(d["key"]), d["rc"],
      d["foreign_busy_s"], d["elapsed_s"], d.get("error", "")))')
    echo "run-all.sh: [$label #$run] $summary" >&2
}

# Whether the runs of a label so far are noisy (spread > 20% or a compile
# ran alongside): prints yes or no.
noisy() {
    python3 - "$OUT" "$SESSION" "$1" <<'EOF'
import json, sys
path, session, label = sys.argv[1:]
runs = [json.loads(l) for l in open(path) if l.strip()]
runs = [r for r in runs if r.get("session") == session and r.get("label") == label]
vals = sorted(r.get(r["key"]) for r in runs if isinstance(r.get(r["key"]), (int, float)))
if len(vals) < 2:
    print("no"); sys.exit()
med = vals[len(vals) // 2]
spread = (vals[-1] - vals[0]) / med if med else 0
foreign = any(r.get("foreign_busy_s", 0) > 0 for r in runs)
print("yes" if spread > 0.20 or foreign else "no")
EOF
}

echo "run-all.sh: session $SESSION, git $GIT_HEAD ($GIT_DIFF), results in $OUT" >&2
for c in "${CONFIGS[@]}"; do
    IFS='|' read -r label key args <<<"$c"
    [[ -n $ONLY && ! $label =~ $ONLY ]] && continue
    args=$(adjust "$args")
    for ((i = 1; i <= RUNS; i++)); do
        run_one "$label" "$key" "$args" "$i"
    done
    if [[ $RUNS -ge 3 && $(noisy "$label") == yes ]]; then
        echo "run-all.sh: [$label] noisy: 2 more runs" >&2
        for ((i = RUNS + 1; i <= RUNS + 2; i++)); do
            run_one "$label" "$key" "$args" "$i"
        done
    fi
done

python3 "$ROOT/bench/report.py" "$OUT" --session "$SESSION" | tee "$ROOT/bench/results/$SESSION.md"
