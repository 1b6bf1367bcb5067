#!/usr/bin/env bash
# A real node with the OCI runtime, as root, with nothing from the internet: a registry
# (Debian's docker-registry) and `shoal server` in one network namespace made here, one
# `shoal agent --runtime oci` in another. Prints:
#   - image pull + unpack throughput (one 256 MiB layer of random data);
#   - pod start latency, create -> Running and Ready, image present: one pod, then a burst
#     of 30 at once (p50 / p99 / max);
#   - the agent's RSS with 31 pods, and a shim's and a sandbox's.
# Needs root, iproute2, util-linux, nftables, docker-registry, skopeo, busybox-static.
# Usage: bench/oci-node.sh   (SHOAL=path/to/shoal, default ./target/release/shoal)
set -u
BIN=$(realpath "${SHOAL:-./target/release/shoal}"); T=bz$$; D=$(mktemp -d)
pkill -f "$D" 2>/dev/null; for n in srv a; do ip netns pids $T-$n 2>/dev/null | xargs -r kill -9; ip netns del $T-$n 2>/dev/null; done
rm -rf $D; mkdir -p $D/agent
for n in srv a; do ip netns add $T-$n; ip -n $T-$n link set lo up; done
ip link add ${T}a0 netns $T-srv type veth peer name eth0 netns $T-a
ip -n $T-srv addr add 172.31.88.1/24 dev ${T}a0; ip -n $T-srv link set ${T}a0 up
ip -n $T-a addr add 172.31.88.2/24 dev eth0; ip -n $T-a link set eth0 up
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/reg\nhttp:\n  addr: 172.31.88.1:5000\n' $D > $D/reg.yml
nsenter --net=/run/netns/$T-srv docker-registry serve $D/reg.yml > $D/reg.log 2>&1 &
python3 - $D/img <<'PY'
import tarfile, io, hashlib, json, os, gzip, sys
out=sys.argv[1]; os.makedirs(out+"/blobs/sha256", exist_ok=True)
buf=io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    for d in ["bin","etc","tmp","var","data"]:
        ti=tarfile.TarInfo(d); ti.type=tarfile.DIRTYPE; ti.mode=0o755; t.addfile(ti)
    data=open("/bin/busybox","rb").read()
    ti=tarfile.TarInfo("bin/busybox"); ti.size=len(data); ti.mode=0o755; t.addfile(ti, io.BytesIO(data))
    for n in ["sh","sleep","cat","echo","ls","wget","httpd","nc","ip","hostname","mount","ps","id","head","dd","touch","env","nslookup"]:
        ti=tarfile.TarInfo("bin/"+n); ti.type=tarfile.SYMTYPE; ti.linkname="busybox"; t.addfile(ti)
    p=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"
    ti=tarfile.TarInfo("etc/passwd"); ti.size=len(p); t.addfile(ti, io.BytesIO(p))
raw=buf.getvalue(); gz=gzip.compress(raw)
def put(b):
    h=hashlib.sha256(b).hexdigest(); open(f"{out}/blobs/sha256/{h}","wb").write(b); return "sha256:"+h
ld=put(gz)
cfg=json.dumps({"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:"+hashlib.sha256(raw).hexdigest()]}}).encode()
cd=put(cfg)
man=json.dumps({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":len(cfg)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":ld,"size":len(gz)}]}).encode()
md=put(man)
json.dump({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":md,"size":len(man),"annotations":{"org.opencontainers.image.ref.name":"1"}}]},open(out+"/index.json","w"))
open(out+"/oci-layout","w").write('{"imageLayoutVersion":"1.0.0"}')
PY
# A big image: 256 MB of random data in one layer.
python3 - $D/big <<'PY'
import tarfile, io, hashlib, json, os, gzip, sys
out=sys.argv[1]; os.makedirs(out+"/blobs/sha256", exist_ok=True)
buf=io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    for i in range(4):
        data=os.urandom(64<<20)
        ti=tarfile.TarInfo(f"blob{i}"); ti.size=len(data); t.addfile(ti, io.BytesIO(data))
raw=buf.getvalue(); gz=gzip.compress(raw, compresslevel=1)
def put(b):
    h=hashlib.sha256(b).hexdigest(); open(f"{out}/blobs/sha256/{h}","wb").write(b); return "sha256:"+h
ld=put(gz); cfg=json.dumps({"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:"+hashlib.sha256(raw).hexdigest()]}}).encode(); cd=put(cfg)
man=json.dumps({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":len(cfg)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":ld,"size":len(gz)}]}).encode(); md=put(man)
json.dump({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":md,"size":len(man),"annotations":{"org.opencontainers.image.ref.name":"1"}}]},open(out+"/index.json","w"))
open(out+"/oci-layout","w").write('{"imageLayoutVersion":"1.0.0"}')
print(len(raw), len(gz))
PY
sleep 1
nsenter --net=/run/netns/$T-srv skopeo copy --quiet --dest-tls-verify=false oci:$D/img:1 docker://172.31.88.1:5000/app:1
nsenter --net=/run/netns/$T-srv skopeo copy --quiet --dest-tls-verify=false oci:$D/big:1 docker://172.31.88.1:5000/big:1
nsenter --net=/run/netns/$T-srv $BIN server --listen 172.31.88.1:6443 --data-dir $D/server > $D/server.log 2>&1 &
sleep 3
printf 'mirrors:\n  "*":\n    endpoint: ["http://172.31.88.1:5000"]\n' > $D/agent/registries.yaml
# Pull and unpack throughput (the CLI, same code as the agent).
mkdir -p $D/pull; cp $D/agent/registries.yaml $D/pull/
S=$(date +%s.%N); nsenter --net=/run/netns/$T-a $BIN image --data-dir $D/pull pull 172.31.88.1:5000/big:1 >/dev/null; E=$(date +%s.%N)
echo "pull+unpack 256 MiB (gzip level 1 of random data, 256 MiB compressed): $(python3 -c "print(f'{$E-$S:.2f} s, {256/($E-$S):.0f} MiB/s')")"
nsenter --net=/run/netns/$T-a $BIN agent --server https://172.31.88.1:6443 --token-file $D/server/node-token --node-name a --node-ip 172.31.88.2 --port 0 --runtime oci --data-dir $D/agent > $D/agent.log 2>&1 &
K="nsenter --net=/run/netns/$T-srv kubectl --kubeconfig $D/server/kubeconfig"
for i in $(seq 1 60); do $K get node a 2>/dev/null | grep -q " Ready " && break; sleep 0.5; done
# Warm: the image present.
$K run warm --image=172.31.88.1:5000/app:1 --image-pull-policy=IfNotPresent --overrides='{"spec":{"nodeName":"a"}}' --command -- sleep 3600 >/dev/null
for i in $(seq 1 60); do [ "$($K get pod warm -o jsonpath='{.status.phase}')" = Running ] && break; sleep 0.5; done
lat() { # $1 = count, $2 = prefix
  rm -f $D/pods.yaml; for i in $(seq 1 $1); do cat >> $D/pods.yaml <<Y
---
apiVersion: v1
kind: Pod
metadata: {name: $2-$i}
spec:
  nodeName: a
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: "172.31.88.1:5000/app:1", imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}]
Y
  done
  ($K get pods -w -o jsonpath='{.metadata.name} {.status.phase} {.status.containerStatuses[0].ready}{"\n"}' 2>/dev/null | while read l; do echo "$(date +%s.%N) $l"; done > $D/watch-$2.log) &
  W=$!; sleep 1
  S=$(date +%s.%N); $K apply -f $D/pods.yaml >/dev/null
  for t in $(seq 1 120); do [ $(grep -c "$2-.* Running true" $D/watch-$2.log) -ge $1 ] && break; sleep 0.5; done
  kill $W 2>/dev/null
  python3 - $D/watch-$2.log $S $2 <<'PY'
import sys
log, start, prefix = sys.argv[1], float(sys.argv[2]), sys.argv[3]
first = {}
for line in open(log):
    parts = line.split()
    if len(parts) >= 4 and parts[1].startswith(prefix + "-") and parts[2] == "Running" and parts[3] == "true":
        first.setdefault(parts[1], float(parts[0]) - start)
v = sorted(first.values())
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print(f"{prefix}: {len(v)} pods, create -> Running and Ready: p50 {p(0.5):.2f} s, p99 {p(0.99):.2f} s, max {v[-1]:.2f} s")
PY
}
lat 1 one; $K delete pod one-1 --wait=false >/dev/null
lat 30 burst
sleep 2
AP=$(pgrep -f "$BIN agent --server https://172.31.88.1" | head -1)
echo "agent RSS with 31 pods: $(grep VmRSS /proc/$AP/status)"
echo "shims: $(pgrep -fc "shoal shim --state-dir $D") RSS each ~ $(ps -o rss= -p $(pgrep -f "shoal shim --state-dir $D" | head -1)) kB; pause: $(ps -o rss= -p $(pgrep -f "shoal pause --dir $D" | head -1)) kB"
pkill -9 -f "$D"; for n in srv a; do ip netns pids $T-$n | xargs -r kill -9; ip netns del $T-$n; done
rm -rf "$D"
