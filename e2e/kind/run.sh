#!/usr/bin/env bash
# The wasmkube cluster e2e suite on kind: creates a cluster (control plane, a worker and an
# edge worker), builds and loads the images, installs the chart, runs the scenarios of
# e2e/cluster/scenarios.sh (the same ones the real-cluster suite, e2e/cluster/run.sh, runs),
# tears the cluster down. Needs Docker, kind, kubectl, helm, buildah and skopeo.
#
#   e2e/kind/run.sh            run it (exits 77 = skipped when Docker or kind is missing)
#   e2e/kind/run.sh --dry-run  print every command it would run, run none
#   e2e/kind/run.sh --keep     leave the cluster up afterwards
set -euo pipefail

readonly SKIP=77
readonly CLUSTER=wasmkube-e2e
readonly NS=wasmkube-system
readonly REGISTRY_NAME=wasmkube-registry
readonly REGISTRY_PORT=5001
# The registry as this host reaches it (pushes); the nodes reach it by name.
readonly REGISTRY_HOST="localhost:${REGISTRY_PORT}"
ROOT=$(cd "${0%/*}/../.." && pwd)
readonly ROOT
# The scenarios read these (see e2e/cluster/scenarios.sh).
# shellcheck disable=SC2034
REGISTRY="${REGISTRY_NAME}:5000"
# shellcheck disable=SC2034
EDGE_NODE="${CLUSTER}-worker2"
# shellcheck source=e2e/cluster/scenarios.sh disable=SC1091
source "$ROOT/e2e/cluster/scenarios.sh"
k() { kubectl "$@"; }
net() { "$@"; }
k_bg() { kubectl "$@" >/dev/null 2>&1 & }
DRY=0
KEEP=0
for arg in "$@"; do
  case $arg in
    --dry-run) DRY=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--dry-run] [--keep]" >&2; exit 2 ;;
  esac
done

# Prints a command, then runs it (not in a dry run).
run() {
  echo "+ $*"
  if ((DRY == 0)); then "$@"; fi
}

step() { echo "==> $*"; }

preflight() {
  local missing=()
  local reason=""
  if ! command -v docker >/dev/null 2>&1; then
    missing+=("docker client")
    reason="no docker"
  elif ! docker info >/dev/null 2>&1; then
    missing+=("a docker daemon")
    reason="no docker"
  fi
  for tool in kind kubectl helm buildah skopeo; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      missing+=("$tool")
      reason=${reason:-"no $tool"}
    fi
  done
  if ((${#missing[@]})); then
    echo "kind e2e: skipped ($reason)"
    echo "kind e2e: missing: ${missing[*]}"
    exit "$SKIP"
  fi
}

# Fails the suite with a message.
fail() { echo "kind e2e: FAILED: $*" >&2; exit 1; }

create_cluster() {
  step "cluster $CLUSTER with a local registry"
  run docker run -d --restart=always -p "127.0.0.1:${REGISTRY_PORT}:5000" --network bridge --name "$REGISTRY_NAME" registry:2
  run kind create cluster --name "$CLUSTER" --config "$ROOT/e2e/kind/cluster.yaml" --wait 120s
  run docker network connect kind "$REGISTRY_NAME"
  # Nodes pull from the registry by its name on the kind network, over plain HTTP.
  local dir="/etc/containerd/certs.d/${REGISTRY_NAME}:5000"
  for node in $(kind_nodes); do
    run docker exec "$node" mkdir -p "$dir"
    run docker exec "$node" sh -c "printf 'server = \"http://${REGISTRY_NAME}:5000\"\n' > $dir/hosts.toml"
  done
}

kind_nodes() {
  if ((DRY)); then echo "${CLUSTER}-control-plane ${CLUSTER}-worker ${CLUSTER}-worker2"; else kind get nodes --name "$CLUSTER"; fi
}

build_and_load() {
  step "images (buildah, FROM scratch) and modules"
  run bash "$ROOT/e2e/kind/images.sh" "$ROOT/target/kind"
  # No module stub: the node installer imports it, as on any cluster.
  for image in wasmkube-operator-amd64 wasmkube-node-installer-amd64; do
    run kind load image-archive "$ROOT/target/kind/$image.tar" --name "$CLUSTER"
  done
  local pair file repo tag lang
  for pair in hello-p1:hello:p1 hello-artifact-p1:hello-artifact:p1 probe-p1:probe:p1 \
    probe-p2:probe:p2 probe-tools:probe:tools http-hello-p2:http-hello:1 \
    hello-native:hello-native:1; do
    IFS=: read -r file repo tag <<<"$pair"
    run skopeo copy --dest-tls-verify=false "oci-archive:$ROOT/target/kind/$file.tar" "docker://${REGISTRY_HOST}/wasmkube/$repo:$tag"
  done
  run bash "$ROOT/scripts/examples.sh" "$ROOT/target/examples"
  for lang in c zig as go; do
    run "$ROOT/target/debug/wasmkube" --insecure push "$ROOT/target/examples/wordcount-$lang.wasm" "${REGISTRY_HOST}/wasmkube/wordcount-$lang:1"
  done
}

install_chart() {
  step "helm install, node installer, RuntimeClass"
  run helm install wasmkube "$ROOT/charts/wasmkube" --namespace "$NS" --create-namespace \
    --set image.registry=docker.io/wasmkube --set image.tag=e2e --set image.pullPolicy=Never \
    --set "operator.insecureRegistries={${REGISTRY_NAME}:5000}" --wait --timeout 5m
  run kubectl -n "$NS" rollout status daemonset/wasmkube-node-installer --timeout=300s
  run kubectl wait node --all --for=jsonpath='{.metadata.labels.wasmkube\.dev/runtime}'=ready --timeout=300s
  run kubectl get runtimeclass wasm
  # The shim fetches Wasm artifacts itself: let it reach the test registry over plain HTTP.
  for node in $(kind_nodes); do
    run docker exec "$node" sh -c "printf '[registries.\"${REGISTRY_NAME}:5000\"]\ninsecure = true\n' >> /etc/wasmkube/shim.toml"
  done
}

teardown() {
  if ((KEEP)); then echo "kind e2e: cluster $CLUSTER kept (kind delete cluster --name $CLUSTER)"; return; fi
  run kind delete cluster --name "$CLUSTER" || true
  run docker rm -f "$REGISTRY_NAME" || true
}

readonly SCENARIOS=(hello wordcounts http listener exec scale placement bad_module beside_runc
  memory invalid invalid_table delete)

if ((DRY == 0)); then preflight; fi
trap teardown EXIT
create_cluster
build_and_load
install_chart
if ((DRY)); then
  for name in "${SCENARIOS[@]}"; do echo "+ scenario $name"; done
  exit 0
fi
if run_scenarios "${SCENARIOS[@]}"; then echo "kind e2e: passed"; else fail "scenarios failed"; fi
