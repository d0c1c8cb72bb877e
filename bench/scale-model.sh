#!/bin/bash
# The scale-model runs of BENCHMARKS.md: Redis's own idle CPU, `herald-bench costs` against
# nodes a b c (d is killed to measure reaping), then each validation workload against a fresh
# Redis and fresh nodes. Release binaries; Redis on 127.0.0.1:16390, nodes on 16001-16004.
# Usage: bench/scale-model.sh OUTDIR
set -u
OUT=${1:?usage: bench/scale-model.sh OUTDIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PIDS=()
redis_up() {
  redis-cli -p 16390 shutdown nosave >/dev/null 2>&1; sleep 0.3
  redis-server --port 16390 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$OUT/redis.log"
  sleep 0.5
}
nodes_up() {
  PIDS=()
  for n in "$@"; do
    RUST_LOG=warn ./target/release/herald --config "bench/scale-$n.toml" > "$OUT/node-$n.log" 2>&1 &
    PIDS+=($!)
  done
  sleep 1.5
}
down() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  redis-cli -p 16390 shutdown nosave >/dev/null 2>&1
}
trap down EXIT
cpu() { redis-cli -p 16390 info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{printf "%.6f", s}'; }

redis_up
c0=$(cpu); sleep 10; c1=$(cpu)
IDLE=$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.1f", (b-a)/10*1e6}')
nodes_up a b c d
./target/release/herald-bench costs --nodes 127.0.0.1:16001,127.0.0.1:16002,127.0.0.1:16003 \
  --redis redis://127.0.0.1:16390/0 --repeat 500 --victim 127.0.0.1:16004 --victim-pid "${PIDS[3]}" \
  --webhook-port 16399 --redis-idle-cpu-us "$IDLE" --pids "${PIDS[0]},${PIDS[1]},${PIDS[2]}" | tee "$OUT/costs.txt"
grep '^{' "$OUT/costs.txt" > "$OUT/costs.json"
down

validate() {
  local w=$1; shift
  redis_up
  nodes_up "$@"
  local addrs pids
  addrs=$(for n in "$@"; do awk '/^port/{printf "127.0.0.1:%s,", $3}' "bench/scale-$n.toml"; done)
  pids=$(IFS=,; echo "${PIDS[*]}")
  ./target/release/herald-bench model --workload "bench/scale-$w.toml" --costs "$OUT/costs.json" \
    --measure "${addrs%,}" --pids "$pids" --redis redis://127.0.0.1:16390/0 --seconds 20 | tee "$OUT/$w.txt"
  down
}
validate v1 a
validate v2 a b c
validate v3 a b c
