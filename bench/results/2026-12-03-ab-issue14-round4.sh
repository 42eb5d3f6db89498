#!/usr/bin/env bash
# Fourth A/B of issue 14: 78451cc (old, with the --statement-tally patch of
# 7da03ab cherry-picked) against main (new), ABBA pairs, for the three
# configurations whose third-round medians fell by more than 5%; then the
# quiet issue-15 rows (hot key, split-process latency, idle cost) on main.
# Nothing else ran on the machine (the helper was told not to build).
set -u
out=${OUT:-/work/ab/round4.jsonl}
: > "$out"
configs=(
 "sqlite transactional 1 20000"
 "postgres leased 1 20000"
 "postgres leased 100 100000"
)
for c in "${configs[@]}"; do
  set -- $c
  for i in 1 2 3 4 5 6; do
    if [ $((i % 2)) = 1 ]; then order="old new"; else order="new old"; fi
    for b in $order; do
      line=$(/tmp/bench-$b --backend $1 --mode $2 --batch $3 --baseline --messages $4 2>/dev/null | tail -n 1)
      echo "{\"binary\":\"$b\",\"pair\":$i,\"result\":$line}" >> "$out"
      echo "$(date +%T) $c $b $(echo "$line" | grep -o '"e2e_msgs_per_sec":[0-9.]*')"
    done
  done
done
# Issue 15 rows on main.
for be in postgres mysql sqlite; do
  line=$(/tmp/bench-new --backend $be --mode leased --batch 100 --producers 16 --hot-key --baseline --messages 100000 2>/dev/null | tail -n 1)
  echo "{\"binary\":\"new\",\"row\":\"hot-key\",\"result\":$line}" >> "$out"; echo "$(date +%T) hot-key $be"
done
for be in mysql sqlite; do
  for i in 1 2; do
    line=$(/tmp/bench-new --backend $be --split-process --rate 200 --batch 1 --messages 6000 2>/dev/null | tail -n 1)
    echo "{\"binary\":\"new\",\"row\":\"split\",\"result\":$line}" >> "$out"; echo "$(date +%T) split $be"
  done
  line=$(/tmp/bench-new --backend $be --idle-seconds 20 --partitions 1024 2>/dev/null | tail -n 1)
  echo "{\"binary\":\"new\",\"row\":\"idle\",\"result\":$line}" >> "$out"; echo "$(date +%T) idle $be"
done
echo finished
