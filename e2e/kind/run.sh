#!/usr/bin/env bash
# The wasmkube cluster e2e suite on kind: creates a cluster (control plane, a worker and an
# edge worker), builds and loads the images, installs the chart, runs the scenarios, tears the
# cluster down. Needs Docker, kind, kubectl, helm, buildah and skopeo.
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
readonly REGISTRY="localhost:${REGISTRY_PORT}"
ROOT=$(cd "${0%/*}/../.." && pwd)
readonly ROOT
readonly MANIFESTS="$ROOT/e2e/kind/manifests"
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
  for image in wasmkube-operator-amd64 wasmkube-node-installer-amd64 module-stub; do
    run kind load image-archive "$ROOT/target/kind/$image.tar" --name "$CLUSTER"
  done
  for module in hello-p1 hello-artifact-p1 probe-p1 probe-p2 http-hello-p2; do
    run skopeo copy --dest-tls-verify=false "oci-archive:$ROOT/target/kind/$module.tar" "docker://${REGISTRY}/wasmkube/${module/-p/:p}"
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

# Applies a manifest with the registry filled in.
apply() {
  echo "+ kubectl apply -f $1 (REGISTRY=${REGISTRY_NAME}:5000)"
  if ((DRY == 0)); then sed "s#REGISTRY#${REGISTRY_NAME}:5000#" "$1" | kubectl apply -f -; fi
}

scenario_hello() {
  step "scenario: hello is Ready, logs, pinned by digest"
  apply "$MANIFESTS/hello.yaml"
  run kubectl wait wasmapp/hello --for=condition=Ready --timeout=180s
  run kubectl logs -l wasmkube.dev/app=hello --tail=-1
  if ((DRY == 0)); then
    kubectl logs -l wasmkube.dev/app=hello --tail=-1 | grep -q "hello from wasmkube" || fail "hello did not log"
    kubectl get pods -l wasmkube.dev/app=hello -o jsonpath='{.items[*].spec.containers[0].image}' | grep -q "@sha256:" || fail "hello not pinned by digest"
  fi
}

scenario_http() {
  step "scenario: an HTTP WasmApp answers through its Service"
  apply "$MANIFESTS/http.yaml"
  run kubectl wait wasmapp/web --for=condition=Ready --timeout=180s
  echo "+ kubectl port-forward service/web 18080:8080 (in the background)"
  if ((DRY == 0)); then
    kubectl port-forward service/web 18080:8080 >/dev/null 2>&1 &
    local forward=$!
    sleep 3
    curl -fsS --max-time 10 http://127.0.0.1:18080/ | grep -q "hello from a wasm pod" \
      || fail "web did not answer through its Service"
    kill "$forward" || true
  fi
}

scenario_wasi_http() {
  step "scenario: a wasi:http component, served by the shim, answers through its Service"
  apply "$MANIFESTS/http-hello.yaml"
  run kubectl wait wasmapp/http-hello --for=condition=Ready --timeout=180s
  echo "+ kubectl port-forward service/http-hello 18081:8080 (in the background)"
  if ((DRY == 0)); then
    kubectl port-forward service/http-hello 18081:8080 >/dev/null 2>&1 &
    local forward=$!
    sleep 3
    curl -fsS --max-time 10 http://127.0.0.1:18081/ | grep -q "Hello from wasmkube" \
      || fail "http-hello did not answer through its Service"
    curl -sS -D - -o /dev/null --max-time 10 http://127.0.0.1:18081/ | grep -qi "^x-wasmkube: http-hello" \
      || fail "http-hello's header is missing"
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://127.0.0.1:18081/trap) == 500 ]] \
      || fail "a trapping request did not get 500"
    curl -fsS --max-time 10 http://127.0.0.1:18081/ >/dev/null || fail "no answer after a trap"
    kill "$forward" || true
  fi
}

scenario_placement() {
  step "scenario: edge-only lands on the edge worker; amd64+arm64 lands on eligible nodes"
  apply "$MANIFESTS/edge.yaml"
  apply "$MANIFESTS/multiarch.yaml"
  run kubectl wait wasmapp/edge-only wasmapp/anywhere --for=condition=Ready --timeout=180s
  run kubectl get pods -l wasmkube.dev/app=edge-only -o jsonpath='{.items[*].spec.nodeName}'
  if ((DRY == 0)); then
    for n in $(kubectl get pods -l wasmkube.dev/app=edge-only -o jsonpath='{.items[*].spec.nodeName}'); do
      [[ $n == "${CLUSTER}-worker2" ]] || fail "edge-only pod on $n"
    done
  fi
}

scenario_beside_nginx() {
  step "scenario: a WasmApp beside an ordinary nginx Deployment"
  run kubectl apply -f "$MANIFESTS/nginx.yaml"
  run kubectl rollout status deployment/nginx --timeout=180s
  run kubectl wait wasmapp/hello --for=condition=Ready --timeout=60s
}

scenario_scale() {
  step "scenario: kubectl scale through the scale subresource"
  run kubectl scale wasmapp/hello --replicas=3
  run kubectl wait wasmapp/hello --for=jsonpath='{.status.readyReplicas}'=3 --timeout=180s
}

scenario_memory() {
  step "scenario: a memory-limit violation makes the app not Ready"
  apply "$MANIFESTS/greedy.yaml"
  run kubectl wait wasmapp/greedy --for=condition=Ready=false --timeout=120s
  run kubectl wait pod -l wasmkube.dev/app=greedy --for=jsonpath='{.status.containerStatuses[0].lastState.terminated.exitCode}'=3 --timeout=120s
}

scenario_delete() {
  step "scenario: deleting a WasmApp removes what it owned"
  run kubectl delete wasmapp/web --wait=true
  run kubectl wait deployment/web service/web --for=delete --timeout=120s
}

scenario_invalid() {
  step "scenario: an invalid WasmApp is refused with a readable message"
  echo "+ kubectl apply -f $MANIFESTS/invalid.yaml (must fail)"
  if ((DRY == 0)); then
    if out=$(sed "s#REGISTRY#${REGISTRY_NAME}:5000#" "$MANIFESTS/invalid.yaml" | kubectl apply -f - 2>&1); then
      fail "invalid WasmApp was accepted"
    fi
    grep -q "needs capabilities.network: inherit" <<<"$out" || fail "unexpected refusal: $out"
  fi
}

teardown() {
  if ((KEEP)); then echo "kind e2e: cluster $CLUSTER kept (kind delete cluster --name $CLUSTER)"; return; fi
  run kind delete cluster --name "$CLUSTER" || true
  run docker rm -f "$REGISTRY_NAME" || true
}

if ((DRY == 0)); then preflight; fi
trap teardown EXIT
create_cluster
build_and_load
install_chart
scenario_hello
scenario_http
scenario_wasi_http
scenario_placement
scenario_beside_nginx
scenario_scale
scenario_memory
scenario_delete
scenario_invalid
echo "kind e2e: passed"
