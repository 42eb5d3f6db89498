#!/usr/bin/env bash
# Issue 15's target table on schema v2, all three backends, one line of JSON per run.
# Usage: bench/results/2026-12-03-issue15-v2.sh BINARY OUT.jsonl
set -u
bin=$1
out=$2
run() {
    local line
    line=$(timeout 900 "$bin" "$@" 2>/dev/null | tail -n 1)
    echo "{\"args\": \"$*\", \"result\": ${line:-null}}" >>"$out"
    echo "$* -> $(echo "$line" | head -c 300)" >&2
}
for b in postgres mysql sqlite; do
    run --backend "$b" --soak-seconds 40 --rate 2000 --batch 100 --baseline
    run --backend "$b" --mode leased --batch 100 --baseline --messages 100000
    run --backend "$b" --mode transactional --batch 100 --baseline --messages 100000
    run --backend "$b" --mode leased --batch 100 --partitions 1024 --baseline --messages 100000
    run --backend "$b" --mode leased --batch 1 --baseline --messages 20000
    run --backend "$b" --mode transactional --batch 1 --baseline --messages 20000
    run --backend "$b" --split-process --rate 200 --batch 1 --messages 6000
    run --backend "$b" --backlog --messages 1000000 --batch 1000
done
