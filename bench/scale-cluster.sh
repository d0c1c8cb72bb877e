#!/bin/bash
# The scale-model cluster run of BENCHMARKS.md: a three-master Redis Cluster on 16491-16493,
# nodes a b c (bench/scale-cluster-*.toml), `herald-bench model --measure` of workload $1 (e.g.
# v2) with the masters in shard order (the one holding the {herald} slot first).
set -u
cd "$(dirname "$0")/.."
D=/tmp/scale-cluster; rm -rf $D; mkdir -p $D
for p in 16491 16492 16493; do
  redis-server --port $p --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --cluster-enabled yes \
    --cluster-config-file $D/nodes-$p.conf --dir $D --logfile $D/redis-$p.log
done
sleep 0.5
redis-cli --cluster create 127.0.0.1:16491 127.0.0.1:16492 127.0.0.1:16493 --cluster-replicas 0 --cluster-yes > $D/create.log 2>&1
for i in $(seq 50); do redis-cli -p 16491 cluster info | grep -q cluster_state:ok && break; sleep 0.2; done
SLOT=$(redis-cli -p 16491 cluster keyslot '{herald}')
STATE=$(redis-cli -p 16491 cluster nodes | awk -v s=$SLOT '{for(i=9;i<=NF;i++){split($i,r,"-"); if (s>=r[1] && s<=r[2]) {split($2,a,"@"); print a[1]}}}')
echo "slot $SLOT on $STATE"
URLS="redis://$STATE/0"
for p in 16491 16492 16493; do [ "127.0.0.1:$p" != "$STATE" ] && URLS="$URLS,redis://127.0.0.1:$p/0"; done
PIDS=()
for n in a b c; do RUST_LOG=warn ./target/release/herald --config bench/scale-cluster-$n.toml > $D/node-$n.log 2>&1 & PIDS+=($!); done
sleep 2
./target/release/herald-bench model --workload bench/scale-$1.toml --measure 127.0.0.1:16001,127.0.0.1:16002,127.0.0.1:16003 \
  --pids "$(IFS=,; echo "${PIDS[*]}")" --redis "$URLS" --seconds 20
for p in "${PIDS[@]}"; do kill $p; done
sleep 0.5
for p in 16491 16492 16493; do redis-cli -p $p shutdown nosave >/dev/null 2>&1; done
