#!/usr/bin/env bash
# Profiles one outbox-bench run: where the CPU goes and what the database
# waits on, over a 5 s window inside the outbox phase of the run.
#
#   bench/profile.sh NAME -- --backend postgres --batch 1 --baseline --messages 100000
#
# Writes bench/results/profile/NAME/: bench.json (the run's JSON line),
# bench.log, perf.data, comm.txt and dso.txt (`perf report --sort comm` /
# `--sort dso`), comm_dso.txt, sym.txt (top symbols), vmstat.txt (`vmstat 1`),
# waits.txt (PostgreSQL: pg_stat_activity wait events of database `test`,
# sampled every 100 ms; MariaDB: processlist states and InnoDB lock waits),
# pstat.txt (context switches, migrations, page faults), counters.txt
# (server counters per second over the window), and summary.txt
# with the figures BENCHMARKS.md quotes.
#
# The window starts 2 s after the bench prints its baseline result (with
# --baseline), after the backlog is enqueued (with --backlog), or 3 s after
# start otherwise (PHASE=baseline: 3 s after start, inside the baseline).
# Environment: BENCH_BIN (default target/release/outbox-bench), WINDOW
# (seconds, default 5), PHASE (outbox or baseline), DELAY (more seconds to
# wait before the window).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

NAME="$1"; shift
[[ ${1:-} == -- ]] && shift
ARGS=("$@")
WINDOW=${WINDOW:-5}
BIN=${BENCH_BIN:-$ROOT/target/release/outbox-bench}
DIR="$ROOT/bench/results/profile/$NAME"
rm -rf "$DIR"; mkdir -p "$DIR"

backend=sqlite
for ((i = 0; i < ${#ARGS[@]}; i++)); do
    [[ ${ARGS[$i]} == --backend ]] && backend=${ARGS[$((i + 1))]}
done

echo "profile.sh: $NAME: uptime: $(uptime)" | tee "$DIR/summary.txt"
"$BIN" "${ARGS[@]}" >"$DIR/bench.out" 2>"$DIR/bench.log" &
bench=$!

# Wait for the outbox phase.
marker=""
[[ " ${ARGS[*]} " == *" --baseline "* ]] && marker="baseline:"
[[ " ${ARGS[*]} " == *" --backlog "* ]] && marker="backlog of"
# PHASE=baseline: profile the plain-table inserts that open a --baseline run.
[[ ${PHASE:-outbox} == baseline ]] && marker=""
if [[ -n $marker ]]; then
    until grep -q "$marker" "$DIR/bench.log" 2>/dev/null; do
        kill -0 $bench 2>/dev/null || { echo "profile.sh: the bench ended early" >&2; break; }
        sleep 0.2
    done
    sleep 2
else
    sleep 3
fi
sleep "${DELAY:-0}"

# Server counters, read before and after the window (per-second deltas in
# counters.txt): transactions, rollbacks (a sequencer pass that found every
# partition locked rolls back), rows, WAL records and syncs (PostgreSQL);
# statements by type, rows, log fsyncs and row lock waits (MariaDB).
counters() {
    case "$backend" in
        postgres)
            psql -h 127.0.0.1 -U postgres test -At -F ' ' -c "
                SELECT 'xact_commit', xact_commit FROM pg_stat_database WHERE datname = 'test'
                UNION ALL SELECT 'xact_rollback', xact_rollback FROM pg_stat_database WHERE datname = 'test'
                UNION ALL SELECT 'tup_fetched', tup_fetched FROM pg_stat_database WHERE datname = 'test'
                UNION ALL SELECT 'tup_inserted', tup_inserted FROM pg_stat_database WHERE datname = 'test'
                UNION ALL SELECT 'tup_updated', tup_updated FROM pg_stat_database WHERE datname = 'test'
                UNION ALL SELECT 'tup_deleted', tup_deleted FROM pg_stat_database WHERE datname = 'test'
                UNION ALL SELECT 'wal_records', wal_records FROM pg_stat_wal
                UNION ALL SELECT 'wal_bytes', wal_bytes::bigint FROM pg_stat_wal
                UNION ALL SELECT 'wal_write', wal_write FROM pg_stat_wal
                UNION ALL SELECT 'wal_sync', wal_sync FROM pg_stat_wal" 2>/dev/null
            ;;
        mysql)
            mysql -h127.0.0.1 -uroot -N -B -e "SHOW GLOBAL STATUS WHERE Variable_name IN
                ('Com_select','Com_insert','Com_update','Com_delete','Com_begin','Com_commit','Com_rollback',
                 'Com_stmt_execute','Com_stmt_prepare','Com_admin_commands','Com_set_option','Questions',
                 'Innodb_rows_read','Innodb_rows_inserted','Innodb_rows_updated','Innodb_rows_deleted',
                 'Innodb_os_log_fsyncs','Innodb_data_fsyncs','Innodb_row_lock_waits','Innodb_row_lock_time',
                 'Handler_commit','Handler_rollback')" 2>/dev/null | tr '\t' ' '
            ;;
    esac
}
counters >"$DIR/counters.before"
counters_start=$(date +%s.%N)

samples=$((WINDOW * 10))
sample_waits() {
    case "$backend" in
        postgres)
            for ((i = 0; i < samples; i++)); do
                echo "SELECT state||' '||coalesce(wait_event_type,'-')||'/'||coalesce(wait_event,'-') AS w, count(*) FROM pg_stat_activity WHERE datname='test' AND pid <> pg_backend_pid() GROUP BY 1;"
                echo "SELECT pg_sleep(0.1);"
            done | psql -h 127.0.0.1 -U postgres test -At -F '|' 2>/dev/null | awk -F '|' 'NF == 2 && $2 ~ /^[0-9]+$/ {n[$1] += $2} END {for (k in n) printf "%8.2f  %s\n", n[k] / '"$samples"', k}' | sort -rn
            ;;
        mysql)
            for ((i = 0; i < samples; i++)); do
                echo "SELECT CONCAT(command,'/',COALESCE(NULLIF(state,''),'-')), COUNT(*) FROM information_schema.PROCESSLIST WHERE db='test' AND id <> CONNECTION_ID() GROUP BY 1;"
                echo "SELECT 'innodb_lock_wait', COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state='LOCK WAIT';"
                echo "DO SLEEP(0.1);"
            done | mysql -h127.0.0.1 -uroot test -N -B 2>/dev/null | awk -F '\t' 'NF == 2 && $2 ~ /^[0-9]+$/ {n[$1] += $2} END {for (k in n) printf "%8.2f  %s\n", n[k] / '"$samples"', k}' | sort -rn
            ;;
        *) echo "(no server: SQLite)" ;;
    esac
}

( sample_waits >"$DIR/waits.txt" ) &
waits=$!
vmstat 1 $((WINDOW + 1)) >"$DIR/vmstat.txt" &
vm=$!
( perf stat -a -x, -e context-switches,cpu-migrations,page-faults -- sleep "$WINDOW" 2>"$DIR/pstat.txt" >/dev/null || true ) &
st=$!
perf record -q -e cpu-clock -a -o "$DIR/perf.data" -- sleep "$WINDOW" 2>/dev/null
counters >"$DIR/counters.after"
counters_end=$(date +%s.%N)
wait $vm $waits $st 2>/dev/null || true
echo "profile.sh: window done; waiting for the bench to finish" >&2
wait $bench || true
tail -n 1 "$DIR/bench.out" >"$DIR/bench.json"

perf report -i "$DIR/perf.data" --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 >"$DIR/comm.txt"
perf report -i "$DIR/perf.data" --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 >"$DIR/dso.txt"
perf report -i "$DIR/perf.data" --sort comm,dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25 >"$DIR/comm_dso.txt"
perf report -i "$DIR/perf.data" --sort sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30 >"$DIR/sym.txt"
rm -f "$DIR/perf.data.old"
python3 - "$DIR/counters.before" "$DIR/counters.after" "$counters_start" "$counters_end" >"$DIR/counters.txt" <<'EOF'
import sys
def read(path):
    out = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out
before, after = read(sys.argv[1]), read(sys.argv[2])
secs = float(sys.argv[4]) - float(sys.argv[3])
for k in before:
    if k in after:
        print(f"{(after[k] - before[k]) / secs:14.1f}/s  {k}")
print(f"(over {secs:.1f} s)")
EOF

{
    echo "== bench: $(cat "$DIR/bench.json" | python3 -c 'import json,sys
d=json.loads(sys.stdin.read())
keys=["e2e_msgs_per_sec","drain_msgs_per_sec","baseline_rows_per_sec","e2e_vs_baseline","latency_p50_ms","latency_p99_ms","client_statements_per_msg","idle_db_statements_per_sec","peak_rss_mib"]
print(", ".join(f"{k}={d.get(k)}" for k in keys if d.get(k) is not None))' 2>/dev/null)"
    echo "== CPU by command (perf cpu-clock, all CPUs, ${WINDOW} s)"; cat "$DIR/comm.txt"
    echo "== CPU by object (kernel vs user code)"; cat "$DIR/dso.txt"
    echo "== CPU by command and object"; head -12 "$DIR/comm_dso.txt"
    echo "== vmstat 1 (first line is since boot)"; cat "$DIR/vmstat.txt"
    echo "== vmstat averages over the window"
    awk 'NR > 3 {n++; cs += $12; us += $13; sy += $14; id += $15; wa += $16; inn += $11} END {if (n) printf "cs/s %.0f  in/s %.0f  us %.0f%%  sy %.0f%%  id %.0f%%  wa %.0f%%\n", cs/n, inn/n, us/n, sy/n, id/n, wa/n}' "$DIR/vmstat.txt"
    echo "== server counters (per second over the window)"; cat "$DIR/counters.txt"
    echo "== database waits (average sessions per state over ${samples} samples)"; cat "$DIR/waits.txt"
    echo "== perf stat (software events, all CPUs, ${WINDOW} s)"; grep -v '^#' "$DIR/pstat.txt" | awk -F, 'NF > 2 {printf "%12s  %s\n", $1, $3}'
} >>"$DIR/summary.txt"
cat "$DIR/summary.txt"
