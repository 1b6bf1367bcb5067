#!/usr/bin/env bash
# Benchmark: how long a DaemonSet takes to reach DESIRED = CURRENT = READY = UP-TO-DATE =
# AVAILABLE = N on `shoal up --nodes N`, from `kubectl create` to `kubectl get ds` showing
# it (kubectl's own start-up included), and the server's RSS and CPU use over the 10 s after
# the last run.
#
#   cargo build --release -p shoal && bench/daemonset-ready.sh [NODES] [RUNS]
#
# Prints one time per run, then the median. Needs kubectl on PATH.
set -euo pipefail
nodes=${1:-3}
runs=${2:-7}
here="$(cd "$(dirname "$0")/.." && pwd)"
shoal="$here/target/release/shoal"
[ -x "$shoal" ] || { echo "build first: cargo build --release -p shoal" >&2; exit 1; }
manifest='apiVersion: apps/v1
kind: DaemonSet
metadata: {name: bench-ds}
spec:
  selector: {matchLabels: {app: bench}}
  template:
    metadata: {labels: {app: bench}}
    spec:
      containers: [{name: c, image: ghcr.io/c1t1d0s7/go-myweb}]'
times=()
for _ in $(seq "$runs"); do
    dir=$(mktemp -d)
    "$shoal" up --data-dir "$dir" --listen 127.0.0.1:0 --nodes "$nodes" > "$dir/log" 2>&1 &
    pid=$!
    until grep -q ready "$dir/log"; do sleep 0.05; done
    export KUBECONFIG="$dir/kubeconfig"
    kubectl get nodes > /dev/null
    start=$(date +%s.%N)
    echo "$manifest" | kubectl create -f - > /dev/null
    want="bench-ds +$nodes +$nodes +$nodes +$nodes +$nodes "
    until kubectl get ds bench-ds --no-headers 2> /dev/null | grep -Eq "$want"; do sleep 0.02; done
    end=$(date +%s.%N)
    t=$(echo "$end - $start" | bc)
    times+=("$t")
    echo "run: ${t}s"
    if [ "${#times[@]}" -eq "$runs" ]; then
        ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
        before=$(ticks); sleep 10; after=$(ticks)
        hz=$(getconf CLK_TCK)
        rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status")
        echo "server over the next 10 s (idle): RSS ${rss} MB, CPU $(( (after - before) * 100 / (hz * 10) ))% of one core"
    fi
    kill "$pid"; wait "$pid" 2> /dev/null || true
    rm -rf "$dir"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median over %d runs: %ss (min %ss, max %ss)\n", NR, a[int((NR+1)/2)], a[1], a[NR]}'
