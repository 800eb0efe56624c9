#!/usr/bin/env bash
# Sourced by the real-cluster suite (e2e/cluster/run.sh) and the demo (e2e/cluster/demo.sh):
# brings up the Kubernetes 1.20 cluster of scripts/cluster.sh with the chart installed, the node
# prepared by the installer, the modules in its registry and the operator running, and tears it
# down (`teardown`, for an EXIT trap). Defines k and k_bg (kubectl) and net (a command inside the
# cluster's network namespace) for e2e/cluster/scenarios.sh.
#
# The operator runs on the host (inside the cluster's network namespace) as the chart's
# ServiceAccount, with that account's token, not as the chart's Deployment: a pod cannot reach
# the API server here (there is no kube-proxy for the kubernetes Service, and the API server
# listens on the namespace's loopback only), and the operator image is a static release build
# that would add a second full build to every run. The chart is installed with
# operator.enabled=false and installer.enabled=false (the installer binary runs on the host,
# against the cluster's containerd, for the same reasons); everything else is the chart's.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=$ROOT/scripts/cluster.sh
: "${WASMKUBE_TOOLS:=/opt/wasmkube-tools}"
TOOLS_BIN=$WASMKUBE_TOOLS/bin
STATE=${WASMKUBE_CLUSTER_DIR:-/var/lib/wasmkube-cluster}
export WASMKUBE_CLUSTER_DIR=$STATE
NETNS=${WASMKUBE_CLUSTER_NETNS:-wasmkube-cluster}
REGISTRY=127.0.0.1:5000
NS=wasmkube-system

net() { nsenter --net="/run/netns/$NETNS" -- "$@"; }
k() { net "$TOOLS_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
# k_bg ARGS...: kubectl in the background (port-forwards), its PID recorded so tear-down stops it.
k_bg() {
  nsenter --net="/run/netns/$NETNS" -- "$TOOLS_BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" \
    "$@" >/dev/null 2>&1 &
  echo $! >"$STATE/pid/bg-$!"
}

teardown() {
  local status=$?
  if [[ ${WASMKUBE_CLUSTER_KEEP:-0} == 1 ]]; then
    echo "cluster kept: scripts/cluster.sh down to stop it"
  else
    bash "$CLUSTER" down || true
  fi
  exit "$status"
}

push_modules() {
  step "modules to the local registry (built from source: Rust, C, Zig, AssemblyScript, Go)"
  local fx=$STATE/fixtures pair
  for pair in hello-p1:hello:p1 hello-artifact-p1:hello-artifact:p1 probe-p1:probe:p1 \
    probe-p2:probe:p2 probe-tools:probe:tools http-hello-p2:http-hello:1 \
    hello-native:hello-native:1; do
    IFS=: read -r file repo tag <<<"$pair"
    net skopeo copy --quiet --dest-tls-verify=false "oci-archive:$fx/$file.tar" \
      "docker://$REGISTRY/wasmkube/$repo:$tag"
  done
  bash "$ROOT/scripts/examples.sh" "$ROOT/target/examples" >/dev/null
  local lang
  for lang in c zig as go; do
    net "$ROOT/target/debug/wasmkube" --insecure push "$ROOT/target/examples/wordcount-$lang.wasm" \
      "$REGISTRY/wasmkube/wordcount-$lang:1" >/dev/null
  done
}

# helm 4 applies server-side by default; a server before 1.23 has no x-kubernetes-validations
# in its CRD schema, so server-side apply of our CRD fails there ("field not declared in
# schema") while a plain create stores it (the server drops the CEL rules it cannot run, and
# the operator checks them itself): on such servers helm 4 needs --server-side=false.
install_chart() {
  step "helm install (chart and CRD unmodified; operator and installer run on the host)"
  local ssa=()
  if [[ $(k version -o json | jq -r '.serverVersion.minor' | tr -dc 0-9) -lt 23 ]]; then
    ssa=(--server-side=false)
  fi
  net "$TOOLS_BIN/helm" --kubeconfig "$STATE/admin.kubeconfig" install wasmkube \
    "$ROOT/charts/wasmkube" --namespace "$NS" --create-namespace "${ssa[@]}" \
    --set operator.enabled=false --set installer.enabled=false --wait --timeout 2m
  k get crd wasmapps.wasmkube.dev -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' | grep -qx True \
    || fail "the CRD is not Established"
  k get runtimeclass wasm >/dev/null
}

# The operator as the chart's ServiceAccount: its token secret (1.20 creates one per account).
start_operator() {
  step "operator (target/debug/wasmkube-operator) as ServiceAccount $NS/wasmkube-operator"
  local secret token
  for _ in $(seq 1 60); do
    secret=$(k -n "$NS" get sa wasmkube-operator -o jsonpath='{.secrets[0].name}' 2>/dev/null || true)
    [[ -n $secret ]] && break
    sleep 1
  done
  [[ -n $secret ]] || fail "no token secret for the operator's ServiceAccount"
  token=$(k -n "$NS" get secret "$secret" -o jsonpath='{.data.token}' | base64 -d)
  cat >"$STATE/operator.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: wasmkube
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$STATE/pki/ca.crt"}
users:
- name: operator
  user: {token: "$token"}
contexts:
- name: operator
  context: {cluster: wasmkube, user: operator}
current-context: operator
EOF
  nsenter --net="/run/netns/$NETNS" -- env KUBECONFIG="$STATE/operator.kubeconfig" POD_NAMESPACE="$NS" POD_NAME=wasmkube-operator-host \
    RUST_LOG=info "$ROOT/target/debug/wasmkube-operator" --listen 127.0.0.1:18090 \
    --insecure-registry "$REGISTRY" --resync-seconds 60 --retry-seconds 5 --log-format text \
    >"$STATE/log/operator.log" 2>&1 &
  echo $! >"$STATE/pid/operator"
  eventually 60 net curl -fsS http://127.0.0.1:18090/readyz || {
    tail -n 30 "$STATE/log/operator.log"
    fail "the operator did not become ready"
  }
}

# bring_up: the cluster, the node installer, the modules, the chart and the operator.
bring_up() {
  local t0=$SECONDS
  bash "$CLUSTER" up
  bash "$CLUSTER" prepare-node
  push_modules
  install_chart
  start_operator
  echo "==> set-up took $((SECONDS - t0)) s"
}
