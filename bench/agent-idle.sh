#!/usr/bin/env bash
# Real-node footprint: a `shoal server` and one `shoal agent --runtime process` on 127.0.0.2,
# ten pods bound to it (each a sleeping shell). Prints:
#   - per pod, the time from the pod appearing bound (on a watch) to its container's first
#     instruction (the process writes its clock);
#   - the agent's RSS and CPU over an idle minute, and the PSS of the ten shims.
# Usage: bench/agent-idle.sh [pods] [idle-seconds]   (default 10 pods, 60 s)
set -euo pipefail
PODS=${1:-10}
IDLE=${2:-60}
BIN=${SHOAL:-./target/release/shoal}
DIR=$(mktemp -d)
trap 'kill $SERVER $AGENT 2>/dev/null; for p in "$DIR"/agent/pods/*/containers/*/*/pid; do kill -9 -- "-$(cat "$p")" 2>/dev/null || true; done; rm -rf "$DIR"' EXIT
PORT=$((20000 + RANDOM % 20000))
"$BIN" server --data-dir "$DIR/server" --listen "127.0.0.1:$PORT" >"$DIR/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do [ -f "$DIR/server/kubeconfig" ] && grep -q ready "$DIR/server.log" && break; sleep 0.1; done
export KUBECONFIG="$DIR/server/kubeconfig"
"$BIN" agent --server "https://127.0.0.1:$PORT" --token-file "$DIR/server/node-token" \
  --node-name bench-node --node-ip 127.0.0.2 --port 0 --data-dir "$DIR/agent" >"$DIR/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 100); do kubectl get node bench-node >/dev/null 2>&1 && break; sleep 0.1; done
mkdir -p "$DIR/starts"
{
  for i in $(seq "$PODS"); do
    cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: idle-$i}
spec:
  nodeName: bench-node
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'date +%s%N > $DIR/starts/idle-$i; exec sleep 100000']
---
YAML
  done
} >"$DIR/pods.yaml"
# A watch notes when each pod appears, bound (nodeName is set at creation): the agent learns
# of it through the same kind of watch.
kubectl get pods --watch-only -o name | while read -r name; do echo "${name#pod/} $(date +%s%N)"; done >"$DIR/seen" &
WATCH=$!
sleep 1
kubectl create -f "$DIR/pods.yaml" >/dev/null
for _ in $(seq 200); do [ "$(ls "$DIR/starts" | wc -l)" -ge "$PODS" ] && break; sleep 0.05; done
sleep 0.5
kill $WATCH 2>/dev/null || true
lat=$(for f in "$DIR"/starts/*; do
  pod=$(basename "$f"); seen=$(awk -v p="$pod" '$1 == p {print $2; exit}' "$DIR/seen")
  echo $(( ($(cat "$f") - seen) / 1000000 ))
done | sort -n)
echo "bound pod seen -> process started, ms (min / median / max over $PODS pods): $(echo "$lat" | head -1) / $(echo "$lat" | sed -n "$(( (PODS + 1) / 2 ))p") / $(echo "$lat" | tail -1)"
for _ in $(seq 100); do [ "$(kubectl get pods --no-headers | grep -c '1/1')" -ge "$PODS" ] && break; sleep 0.1; done
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$AGENT/stat"; }
c0=$(ticks); sleep "$IDLE"; c1=$(ticks)
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")
shims=0
# PSS: the shims share the binary's pages, which RSS would count once per shim.
for p in $(pgrep -f "shoal shim" || true); do shims=$(( shims + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup") )); done
echo "agent idle with $PODS pods: RSS $((rss / 1024)) MB, CPU $(awk -v d=$((c1 - c0)) -v hz="$hz" -v s="$IDLE" 'BEGIN {printf "%.2f%%", 100 * d / hz / s}') over ${IDLE} s"
echo "shims: $(pgrep -fc "shoal shim" || echo 0) processes, PSS $((shims / 1024)) MB in all"
