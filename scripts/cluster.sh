#!/usr/bin/env bash
# A real single-node Kubernetes 1.20 cluster on this machine, for the cluster suite and the demo:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a kubelet on a private containerd
# with the CRI plugin, the CNI bridge and the `wasmkube` handler, and a local OCI registry.
#
#   scripts/cluster.sh up      build (or reuse) the binaries, start everything, wait for the node
#   scripts/cluster.sh prepare-node   run the node installer against it (shim, config, label)
#   scripts/cluster.sh down    stop everything by PID, unmount, remove cgroups, netns and state
#   scripts/cluster.sh env     print the variables to talk to it (eval "$(scripts/cluster.sh env)")
#   scripts/cluster.sh run CMD run CMD inside the cluster's network namespace (kubectl, curl, ...)
#
# Network rule: everything runs inside the network namespace $WASMKUBE_CLUSTER_NETNS (default
# wasmkube-cluster), which has loopback and the CNI bridge only and no route off the machine;
# processes enter it with `nsenter --net` (not `ip netns exec`, which would also give each one a
# mount namespace of its own, and the kubelet's volume mounts must be visible to containerd).
# The kubelet also gets AWS_EC2_METADATA_DISABLED=true: its built-in AWS credential provider
# would otherwise try 169.254.169.254 at start.
#
# There is no kube-proxy and no DNS: Services get a ClusterIP and Endpoints, and are reached
# with `kubectl port-forward`, as the suite does. The node is named 127.0.0.1.
#
# Settings (environment): WASMKUBE_CLUSTER_DIR (state, default /var/lib/wasmkube-cluster),
# WASMKUBE_CLUSTER_CONTAINERD (directory with the containerd binary to run; default the one on
# PATH, apt's 1.6), WASMKUBE_SHIM (the shim binary; default target/debug), WASMKUBE_TOOLS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${WASMKUBE_TOOLS:=/opt/wasmkube-tools}"
STATE=${WASMKUBE_CLUSTER_DIR:-/var/lib/wasmkube-cluster}
NETNS=${WASMKUBE_CLUSTER_NETNS:-wasmkube-cluster}
K8S=$WASMKUBE_TOOLS/kubernetes-1.20.2/bin
TOOLS_BIN=$WASMKUBE_TOOLS/bin
readonly STATE NETNS K8S TOOLS_BIN
readonly API_PORT=6443 REGISTRY_PORT=5000
# The pod network of the CNI bridge (inside the namespace only) and the Service range.
readonly POD_SUBNET=10.244.0.0/24 SERVICE_RANGE=10.0.0.0/24
readonly NODE=127.0.0.1
# The runc pods' sandbox image, imported from the fixtures (there is no registry to pull it from).
readonly PAUSE_IMAGE=registry.k8s.io/pause:wasmkube-e2e

log() { printf '==> cluster: %s\n' "$*"; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

in_netns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

kubectl_admin() { in_netns "$TOOLS_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }

# start NAME CMD...: starts CMD in the namespace in the background, its output in
# $STATE/log/NAME.log, its PID in $STATE/pid/NAME.
start() {
  local name=$1
  shift
  mkdir -p "$STATE/log" "$STATE/pid"
  # nsenter and setsid exec (no fork: the background job is not a group leader), so $! is the
  # process itself, and the leader of its own process group.
  nsenter --net="/run/netns/$NETNS" -- setsid "$@" >"$STATE/log/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/pid/$name"
}

# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds, or fails naming WHAT and its log.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      local logf="$STATE/log/$what.log"
      [[ -f $logf ]] && tail -n 30 "$logf" >&2
      die "$what did not come up within ${secs}s (log: $logf)"
    fi
    sleep 0.5
  done
}

preflight() {
  [[ $(id -u) -eq 0 ]] || die "needs root (containerd, the kubelet, network namespaces)"
  bash "$ROOT/scripts/cluster/build-kubernetes.sh"
  # shellcheck source=scripts/lib.sh disable=SC1091
  source "$ROOT/scripts/lib.sh"
  need_apt etcd-server openssl containerd runc containernetworking-plugins docker-registry \
    iproute2 util-linux curl jq
  [[ -x $TOOLS_BIN/kubectl && -x $TOOLS_BIN/helm ]] || bash "$ROOT/scripts/tools.sh"
  SHIM=${WASMKUBE_SHIM:-$ROOT/target/debug/containerd-shim-wasmkube-v1}
  [[ -x $SHIM ]] || die "$SHIM not found: run 'cargo build --workspace' first"
  CONTAINERD_DIR=${WASMKUBE_CLUSTER_CONTAINERD:-$(dirname "$(command -v containerd)")}
  [[ -x $CONTAINERD_DIR/containerd ]] || die "no containerd in $CONTAINERD_DIR"
}

# A CA, the API server's serving certificate, an admin client (system:masters) and the
# service-account signing key, made with openssl.
make_pki() {
  local pki=$STATE/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=wasmkube-cluster-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    cat >apiserver.ext <<EOF
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOF
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key \
      -out apiserver.csr 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=wasmkube-admin" \
      -keyout admin.key -out admin.csr 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile client.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  cat >"$STATE/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: wasmkube
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$pki/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$pki/admin.crt", client-key: "$pki/admin.key"}
contexts:
- name: wasmkube
  context: {cluster: wasmkube, user: admin, namespace: default}
current-context: wasmkube
EOF
}

# containerd with CRI and the CNI bridge, as a node is before wasmkube is installed (runc only):
# `prepare-node` then runs the node installer against it. The shim's config is written first,
# with the local registry allowed over plain HTTP (the installer keeps an existing one).
containerd_config() {
  local c=$STATE/containerd
  mkdir -p "$c/cni" "$c/bin" "$c/certs.d/127.0.0.1:$REGISTRY_PORT"
  cat >"$c/certs.d/127.0.0.1:$REGISTRY_PORT/hosts.toml" <<EOF
server = "http://127.0.0.1:$REGISTRY_PORT"
[host."http://127.0.0.1:$REGISTRY_PORT"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$c/cni/10-wasmkube-cluster.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "wasmkube-cluster", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]], "dataDir": "$c/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
  cat >"$c/shim.toml" <<EOF
cache_dir = "$STATE/wasmkube-cache"
content_stores = ["$c/root/io.containerd.content.v1.content"]
[registries."127.0.0.1:$REGISTRY_PORT"]
insecure = true
EOF
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "10010"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$c/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$c/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
}

start_containerd() {
  local c=$STATE/containerd
  start containerd env "PATH=$c/bin:$CONTAINERD_DIR:$PATH" "$CONTAINERD_DIR/containerd" \
    --config "$c/config.toml"
  wait_for containerd 30 ctr_cluster version
}

# The pause image for runc pods (there is no registry to pull it from).
import_pause() {
  ctr_cluster -n k8s.io images import "$STATE/fixtures/pause.tar" >/dev/null
}

restart_containerd() {
  stop_pid containerd
  start_containerd
}

# What the chart's node installer does on a node, run here on the host against the cluster's
# containerd: the shim into a directory on containerd's PATH, the runtime block into its
# config, containerd restarted, the module stub imported, the node labelled
# wasmkube.dev/runtime=ready.
prepare_node() {
  preflight
  local c=$STATE/containerd major
  major=$("$CONTAINERD_DIR/containerd" --version | awk '{print $3}' | sed 's/^v//; s/\..*//')
  log "node installer (wasmkube-node-installer install, containerd $major.x config)"
  in_netns env KUBECONFIG="$STATE/admin.kubeconfig" NODE_NAME=$NODE \
    "$ROOT/target/debug/wasmkube-node-installer" install --host-root / --shim-source "$SHIM" \
    --bin-dir "$c/bin" --containerd-config "$c/config.toml" --shim-config "$c/shim.toml" \
    --containerd-socket "$c/containerd.sock" --containerd-major "$major" --restart none \
    --stub-archive "$c/module-stub.tar" --ctr "$CONTAINERD_DIR/ctr" \
    >"$STATE/log/installer.log" 2>&1 || { cat "$STATE/log/installer.log" >&2; die "the node installer failed"; }
  log "restarting containerd (PID $(cat "$STATE/pid/containerd")) with the wasmkube handler"
  restart_containerd
  wait_for kubelet 60 kubectl_admin wait node/$NODE --for=condition=Ready --timeout=2s
  kubectl_admin get node $NODE -o jsonpath='{.metadata.labels.wasmkube\.dev/runtime}' | grep -qx ready \
    || die "the installer did not label node $NODE"
}

ctr_cluster() {
  in_netns env "PATH=$CONTAINERD_DIR:$PATH" ctr --address "$STATE/containerd/containerd.sock" "$@"
}

start_control_plane() {
  local pki=$STATE/pki kc=$STATE/admin.kubeconfig
  start etcd etcd --name wasmkube --data-dir "$STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster wasmkube=http://127.0.0.1:2380
  wait_for etcd 30 in_netns curl -fsS http://127.0.0.1:2379/health
  start kube-apiserver "$K8S/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=$API_PORT \
    --insecure-port=0 --client-ca-file="$pki/ca.crt" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --authorization-mode=Node,RBAC --service-cluster-ip-range=$SERVICE_RANGE \
    --kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname --allow-privileged=true \
    --endpoint-reconciler-type=none --profiling=false
  wait_for kube-apiserver 90 kubectl_admin get --raw /readyz
  start kube-controller-manager "$K8S/kube-controller-manager" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --port=0 --secure-port=10257 --leader-elect=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=true --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" --controllers='*,-cloud-node-lifecycle' \
    --profiling=false
  start kube-scheduler "$K8S/kube-scheduler" --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --port=0 --secure-port=10259 --leader-elect=false --profiling=false
}

start_kubelet() {
  local k=$STATE/kubelet
  mkdir -p "$k"
  cat >"$k/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
cgroupDriver: cgroupfs
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$STATE/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
resolvConf: "$k/resolv.conf"
serializeImagePulls: false
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  # Pods get no name servers: nothing to resolve with, and nothing to send off the machine.
  : >"$k/resolv.conf"
  start kubelet env AWS_EC2_METADATA_DISABLED=true "$K8S/kubelet" \
    --kubeconfig="$STATE/admin.kubeconfig" --config="$k/config.yaml" \
    --container-runtime=remote \
    --container-runtime-endpoint="unix://$STATE/containerd/containerd.sock" \
    --root-dir="$k/root" --cert-dir="$k/pki" --hostname-override=$NODE \
    --node-labels=kubernetes.io/os=linux --v=1
  wait_for kubelet 120 kubectl_admin wait node/$NODE --for=condition=Ready --timeout=2s
}

start_registry() {
  mkdir -p "$STATE/registry"
  cat >"$STATE/registry/config.yml" <<EOF
version: 0.1
storage:
  filesystem: {rootdirectory: "$STATE/registry/data"}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$REGISTRY_PORT
log: {level: warn}
EOF
  start registry docker-registry serve "$STATE/registry/config.yml"
  wait_for registry 30 in_netns curl -fsS "http://127.0.0.1:$REGISTRY_PORT/v2/"
}

up() {
  preflight
  if [[ -d $STATE/pid ]] && compgen -G "$STATE/pid/*" >/dev/null; then
    die "a cluster is already up in $STATE (scripts/cluster.sh down first)"
  fi
  local started=$SECONDS
  rm -rf "$STATE"
  mkdir -p "$STATE"
  FIXTURES=$STATE/fixtures
  mkdir -p "$FIXTURES"
  # The runc pods' sandbox image (the e2e pause program, built from C) and the test modules.
  log "fixtures (modules built from source, pause image) in $FIXTURES"
  "$ROOT/target/debug/wasmkube-fixtures" "$FIXTURES" >/dev/null
  # The network namespaces that exist now are not ours: down removes only new cni-* ones.
  ls /run/netns 2>/dev/null >"$STATE/netns-before" || true
  log "network namespace $NETNS (loopback only, no route out)"
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  make_pki
  containerd_config
  log "etcd, kube-apiserver, controller-manager, scheduler (Kubernetes 1.20.2)"
  start_control_plane
  log "containerd $("$CONTAINERD_DIR/containerd" --version | awk '{print $3}') with CRI and CNI (runc only; prepare-node adds wasmkube)"
  start_containerd
  import_pause
  log "kubelet (node $NODE)"
  start_kubelet
  log "registry 127.0.0.1:$REGISTRY_PORT"
  start_registry
  log "up in $((SECONDS - started)) s; state in $STATE"
}

# stop_pid NAME: SIGTERM, then SIGKILL after 10 s, the process recorded as NAME.
stop_pid() {
  local f=$STATE/pid/$1 pid
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Every process of the cluster's pods (their cgroups) and every shim of its containerd.
kill_workloads() {
  local procs
  for procs in /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/**/cgroup.procs; do
    [[ -f $procs ]] || continue
    xargs -r kill -KILL <"$procs" 2>/dev/null || true
  done
  local sock=$STATE/containerd/containerd.sock pid
  for pid in $(pgrep -f -- "-address $sock" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
}

remove_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/*/kubepods; do
    [[ -d $dir ]] || continue
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

unmount_state() {
  # Deepest first: every mount point at or below the state directory and the kubelet's paths.
  awk -v s="$STATE" '{ if (index($5, s) == 1) print $5 }' /proc/self/mountinfo | sort -r \
    | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  local path ns
  for path in /run/netns/cni-*; do
    [[ -e $path ]] || continue
    ns=${path##*/}
    grep -qx "$ns" "$STATE/netns-before" 2>/dev/null && continue
    umount -l "/run/netns/$ns" 2>/dev/null || true
    rm -f "/run/netns/$ns"
  done
}

down() {
  [[ -d $STATE ]] || { log "nothing to stop ($STATE does not exist)"; return 0; }
  log "stopping (by PID)"
  stop_pid kubelet
  kill_workloads
  local name
  for name in containerd registry kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_pid "$name"
  done
  # Anything else recorded (port-forwards, an operator started by the suite).
  for name in "$STATE"/pid/*; do [[ -e $name ]] && stop_pid "${name##*/}"; done
  kill_workloads
  # Nothing that names the state directory may outlive the PIDs above (the shims' zygotes
  # exit when their shim's socket closes: give them 5 s): say so, then stop it.
  local leaked _
  for _ in $(seq 1 20); do
    leaked=$(pgrep -f -- "$STATE/" | grep -vx -e "$$" -e "$BASHPID" || true)
    [[ -z $leaked ]] && break
    sleep 0.25
  done
  if [[ -n $leaked ]]; then
    echo "cluster: processes not stopped by their PID files (a bug):" >&2
    echo "$leaked" | xargs -r ps -o pid=,ppid=,args= -p >&2 || true
    echo "$leaked" | xargs -r kill -KILL 2>/dev/null || true
  fi
  unmount_state
  remove_cgroups
  if ip netns list 2>/dev/null | grep -qw "^$NETNS"; then ip netns delete "$NETNS"; fi
  # Paths the kubelet 1.20 writes whatever its --root-dir.
  rm -rf /var/log/pods /var/lib/kubelet/device-plugins
  rmdir /var/lib/kubelet 2>/dev/null || true
  rm -rf "$STATE"
  log "down"
}

env_vars() {
  cat <<EOF
export KUBECONFIG=$STATE/admin.kubeconfig
export WASMKUBE_CLUSTER_NETNS=$NETNS
export WASMKUBE_CLUSTER_REGISTRY=127.0.0.1:$REGISTRY_PORT
# Run kubectl inside the namespace: nsenter --net=/run/netns/$NETNS -- $TOOLS_BIN/kubectl ...
EOF
}

case ${1:-} in
  up) up ;;
  prepare-node) prepare_node ;;
  down) down ;;
  env) env_vars ;;
  run)
    shift
    in_netns env "KUBECONFIG=$STATE/admin.kubeconfig" "PATH=$TOOLS_BIN:$PATH" "$@"
    ;;
  *) echo "usage: $0 up|down|env|run CMD..." >&2; exit 2 ;;
esac
