#!/usr/bin/env bash
# A/B of issue 14: 78451cc (old) against main (new), alternating ABBA, 5 pairs.
set -u
out=/work/ab/ab.jsonl
: > $out
configs=(
 "postgres transactional 1 20000"
 "postgres leased 1 20000"
 "postgres transactional 100 100000"
 "postgres leased 100 100000"
 "mysql transactional 1 20000"
 "mysql leased 100 100000"
 "sqlite transactional 1 20000"
 "sqlite leased 100 100000"
)
for c in "${configs[@]}"; do
  set -- $c
  for i in 1 2 3 4 5; do
    if [ $((i % 2)) = 1 ]; then order="old new"; else order="new old"; fi
    for b in $order; do
      line=$(/tmp/bench-$b --backend $1 --mode $2 --batch $3 --baseline --messages $4 2>/dev/null | tail -n 1)
      echo "{\"binary\":\"$b\",\"pair\":$i,\"result\":$line}" >> $out
      echo "$(date +%T) $c $b $(echo "$line" | grep -o '"e2e_msgs_per_sec":[0-9.]*')"
    done
  done
done
