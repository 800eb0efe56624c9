#!/usr/bin/env bash
# The cluster scenarios, shared by the real-cluster suite (e2e/cluster/run.sh, Kubernetes 1.20
# built here) and the kind suite (e2e/kind/run.sh). Sourced; the caller defines:
#   k ARGS...        kubectl against the cluster; k_bg ARGS...: the same in the background
#   net CMD...       runs CMD where port-forwards listen (the cluster's network namespace or the host)
#   REGISTRY         the registry as the operator and the nodes see it (host:port)
#   EDGE_NODE        an edge node (label node-role.kubernetes.io/edge), or "" when there is none
# Each scenario is a function `scenario_NAME`; `run_scenarios` runs the named ones, each in a
# subshell with `set -e`, and prints `cluster e2e: N passed, M failed`.

SCENARIO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MANIFESTS=$SCENARIO_DIR/../kind/manifests
EXAMPLES=$SCENARIO_DIR/../../examples

step() { echo "==> $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

# apply FILE: kubectl apply with REGISTRY filled in.
apply() {
  echo "+ kubectl apply -f ${1#"$SCENARIO_DIR/"} (REGISTRY=$REGISTRY)"
  sed "s#REGISTRY#${REGISTRY}#g" "$1" | k apply -f -
}

# eventually SECS CMD...: retries CMD every second until it succeeds; fails after SECS.
eventually() {
  local secs=$1
  shift
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# app_logs APP: the current and previous logs of every pod of APP.
app_logs() {
  local pod
  for pod in $(k get pods -l "wasmkube.dev/app=$1" -o name 2>/dev/null); do
    k logs "$pod" 2>/dev/null || true
    k logs "$pod" --previous 2>/dev/null || true
  done
}

logs_contain() { app_logs "$1" | grep -qF -- "$2"; }

# wait_log APP TEXT [SECS]: until a pod of APP has logged TEXT.
wait_log() {
  echo "+ wait for '$2' in the logs of $1"
  eventually "${3:-180}" logs_contain "$1" "$2" || {
    k get wasmapp "$1" -o yaml || true
    k get pods -l "wasmkube.dev/app=$1" -o wide || true
    k describe pods -l "wasmkube.dev/app=$1" | tail -n 25 || true
    fail "$1 did not log '$2'"
  }
}

condition() {
  k get wasmapp "$1" -o jsonpath="{.status.conditions[?(@.type==\"$2\")].$3}"
}

condition_is() { [[ $(condition "$1" "$2" status) == "$3" ]]; }

# wait_condition APP TYPE STATUS [SECS]
wait_condition() {
  echo "+ wait for wasmapp/$1 condition $2=$3"
  eventually "${4:-180}" condition_is "$1" "$2" "$3" || {
    k get wasmapp "$1" -o yaml || true
    fail "wasmapp/$1: condition $2 is not $3"
  }
}

# warning_event APP REASON: a Warning Event about APP with REASON exists.
warning_event() {
  k get events --field-selector "involvedObject.name=$1,type=Warning" \
    -o jsonpath='{range .items[*]}{.reason}{"\n"}{end}' | grep -qx "$2"
}

# exited_with APP CODE: the first pod's container has terminated (now or last) with CODE.
exited_with() {
  local codes
  codes=$(k get pods -l "wasmkube.dev/app=$1" -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode} {.items[0].status.containerStatuses[0].lastState.terminated.exitCode}')
  grep -qw -- "$2" <<<"$codes"
}

ready_replicas_is() { [[ $(k get wasmapp "$1" -o jsonpath='{.status.readyReplicas}') == "$2" ]]; }

deploy_logs_contain() { k logs "deploy/$1" | grep -qF -- "$2"; }

no_owned_objects() { [[ -z $(k get deploy,svc -l app.kubernetes.io/managed-by=wasmkube-operator -o name) ]]; }

no_app_pods() { [[ -z $(k get pods -l wasmkube.dev/app -o name) ]]; }

# forward NAME SERVICE LOCAL REMOTE: kubectl port-forward in the background; FORWARD_PID is set.
forward() {
  echo "+ kubectl port-forward service/$2 $3:$4"
  k_bg port-forward "service/$2" "$3:$4"
  FORWARD_PID=$!
  eventually 30 net curl -s -o /dev/null "http://127.0.0.1:$3/" || fail "port-forward to $2 did not open"
}

scenario_hello() {
  step "hello: a module that prints and exits; its output in kubectl logs, its image pinned by digest"
  apply "$MANIFESTS/hello.yaml"
  wait_log hello "hello from wasmkube"
  wait_log hello "arg[1]=from"
  k get pods -l wasmkube.dev/app=hello -o jsonpath='{.items[*].spec.containers[0].image}' | grep -q "@sha256:" \
    || fail "hello's pod does not run a digest-pinned image"
  condition_is hello ModuleResolved True || fail "hello: ModuleResolved is not True"
  # A module that exits 0 is restarted by its Deployment, as a container's would be: it is
  # never Ready, and its pods show Completed / CrashLoopBackOff between runs.
  eventually 120 exited_with hello 0 || fail "hello's container did not exit 0"
}

scenario_wordcounts() {
  step "wordcount in C, Zig, AssemblyScript and Go: each reads its mounted ConfigMap"
  local lang
  for lang in c zig as go; do apply "$EXAMPLES/wordcount-$lang/wasmapp.yaml"; done
  for lang in c zig as go; do wait_log "wordcount-$lang" "8 63 384 /data/input.txt" 240; done
}

scenario_http() {
  step "http-hello: a wasi:http component served by the shim answers through its Service"
  apply "$EXAMPLES/http-hello/wasmapp.yaml"
  wait_condition http-hello Ready True 240
  k get endpoints http-hello -o jsonpath='{.subsets[*].addresses[*].ip}' | grep -q . \
    || fail "http-hello's Service has no endpoints"
  forward http http-hello 18081 8080
  net curl -fsS --max-time 10 http://127.0.0.1:18081/ | grep -q "Hello from wasmkube" \
    || fail "http-hello did not answer through its Service"
  net curl -sS -D - -o /dev/null --max-time 10 http://127.0.0.1:18081/ | grep -qi "^x-wasmkube: http-hello" \
    || fail "http-hello's header is missing"
  [[ $(net curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://127.0.0.1:18081/trap) == 500 ]] \
    || fail "a trapping request did not get 500"
  net curl -fsS --max-time 10 http://127.0.0.1:18081/ >/dev/null || fail "no answer after a trap"
  kill "$FORWARD_PID" 2>/dev/null || true
}

scenario_listener() {
  step "web: a module that listens itself (network: inherit) answers through its Service"
  apply "$MANIFESTS/http.yaml"
  wait_condition web Ready True 240
  forward web web 18080 8080
  net curl -fsS --max-time 10 http://127.0.0.1:18080/ | grep -q "hello from a wasm pod" \
    || fail "web did not answer through its Service"
  kill "$FORWARD_PID" 2>/dev/null || true
}

scenario_exec() {
  step "tools: kubectl exec of a tool module in a running Wasm pod"
  apply "$MANIFESTS/tools.yaml"
  wait_condition tools Ready True 240
  local out
  out=$(k exec deploy/tools -- /tools/ls.wasm /) || fail "kubectl exec /tools/ls.wasm failed"
  grep -q "probe.wasm" <<<"$out" || fail "ls did not list the rootfs: $out"
  out=$(k exec deploy/tools -- /tools/cat.wasm /etc/passwd) || fail "kubectl exec cat failed"
  grep -q "^decoy:" <<<"$out" || fail "cat did not read the image's /etc/passwd: $out"
  if out=$(k exec deploy/tools -- ls / 2>&1); then fail "exec of a native command succeeded"; fi
  grep -q "execs WebAssembly programs only" <<<"$out" || fail "unexpected refusal: $out"
}

scenario_scale() {
  step "kubectl scale through the WasmApp's /scale subresource"
  k scale wasmapp/tools --replicas=2
  eventually 180 ready_replicas_is tools 2 || fail "tools did not reach 2 ready replicas"
  [[ $(k get deploy tools -o jsonpath='{.spec.replicas}') == 2 ]] || fail "the Deployment was not scaled"
  k scale wasmapp/tools --replicas=1
}

scenario_placement() {
  step "placement: amd64+arm64 runs here; edge-only is reported unschedulable (no edge node)"
  apply "$MANIFESTS/multiarch.yaml"
  apply "$MANIFESTS/edge.yaml"
  wait_log anywhere "hello from wasmkube"
  if [[ -n ${EDGE_NODE:-} ]]; then
    wait_log edge-only "hello from wasmkube"
    local n
    for n in $(k get pods -l wasmkube.dev/app=edge-only -o jsonpath='{.items[*].spec.nodeName}'); do
      [[ $n == "$EDGE_NODE" ]] || fail "edge-only pod on $n"
    done
  else
    wait_condition edge-only Schedulable False 120
    [[ $(condition edge-only Schedulable reason) == NoWasmNodes ]] || fail "edge-only: wrong reason"
    condition edge-only Schedulable message | grep -q "relax spec.placement" \
      || fail "edge-only: the message does not say what to do"
    eventually 60 warning_event edge-only NoWasmNodes || fail "no Warning Event for edge-only"
  fi
}

scenario_bad_module() {
  step "a module that is not in the registry: condition and Warning Event, no pods"
  apply "$MANIFESTS/missing.yaml"
  wait_condition missing ModuleResolved False 120
  local reason message
  reason=$(condition missing ModuleResolved reason)
  message=$(condition missing ModuleResolved message)
  echo "reason=$reason message=$message"
  grep -q "wasmkube/missing" <<<"$message" || fail "the message does not name the module: $message"
  eventually 60 warning_event missing "$reason" || fail "no Warning Event $reason for missing"
  [[ -z $(k get pods -l wasmkube.dev/app=missing -o name) ]] || fail "pods were created for a missing module"
}

scenario_beside_runc() {
  step "a WasmApp beside an ordinary (runc) Deployment on the same node"
  apply "$MANIFESTS/native.yaml"
  k rollout status deployment/native --timeout=180s
  eventually 60 deploy_logs_contain native "hello from runc" || fail "the runc pod did not log"
  wait_condition tools Ready True 60
}

scenario_memory() {
  step "a memory-limit violation: memory.grow fails inside the engine, the module exits 3"
  apply "$MANIFESTS/greedy.yaml"
  wait_log greedy "grow failed at"
  wait_condition greedy Ready False 60
}

scenario_invalid() {
  step "an invalid WasmApp is refused by the API server (CEL) or reported Invalid by the operator"
  local out
  if out=$(sed "s#REGISTRY#${REGISTRY}#" "$MANIFESTS/invalid.yaml" | k apply -f - 2>&1); then
    # A server without CEL (Kubernetes < 1.25) stores it; the operator must refuse it.
    echo "accepted by the server (no CEL): $out"
    wait_condition invalid Ready False 120
    [[ $(condition invalid Ready reason) == Invalid ]] || fail "invalid: reason is not Invalid"
    condition invalid Ready message | grep -q "capabilities.network" || fail "invalid: unclear message"
    eventually 60 warning_event invalid Invalid || fail "no Warning Event Invalid"
    [[ -z $(k get deploy invalid -o name 2>/dev/null) ]] || fail "an invalid WasmApp was deployed"
  else
    grep -q "needs capabilities.network: inherit" <<<"$out" || fail "unexpected refusal: $out"
  fi
}

# The table of bad WasmApps (e2e/cluster/invalid/, see its README): each is refused at apply
# by the server's schema, or stored (a server without CEL) and then reported Invalid by the
# operator with the file's `# operator:` text and a Warning Event; none gets a Deployment.
scenario_invalid_table() {
  step "every bad WasmApp of e2e/cluster/invalid/ is refused or reported Invalid, never deployed"
  local file name want out refused=0 reported=0
  for file in "$SCENARIO_DIR"/invalid/*.yaml; do
    name=$(sed -n 's/^  name: //p' "$file" | head -n 1)
    want=$(sed -n 's/^# operator: *//p' "$file" | sed 's/ *$//')
    if out=$(k create -f "$file" 2>&1); then
      wait_condition "$name" Ready False 60
      [[ $(condition "$name" Ready reason) == Invalid ]] || fail "$name: reason is not Invalid"
      if [[ -n $want ]]; then
        condition "$name" Ready message | grep -qF -- "$want" \
          || fail "$name: the message lacks '$want': $(condition "$name" Ready message)"
      fi
      eventually 60 warning_event "$name" Invalid || fail "$name: no Warning Event Invalid"
      reported=$((reported + 1))
    else
      echo "refused at apply: ${out:0:160}"
      refused=$((refused + 1))
    fi
  done
  # Deployments are written only after validation: give a wrong reconcile time to show.
  sleep 3
  for file in "$SCENARIO_DIR"/invalid/*.yaml; do
    name=$(sed -n 's/^  name: //p' "$file" | head -n 1)
    [[ -z $(k get deploy "$name" -o name 2>/dev/null) ]] || fail "$name was deployed"
  done
  echo "bad WasmApps: $refused refused by the server's schema, $reported reported Invalid by the operator"
  local minor
  minor=$(k version -o json | jq -r '.serverVersion.minor' | tr -dc 0-9)
  if ((minor < 25)); then
    ((reported > 0)) || fail "a server without CEL refused every case: the operator was not exercised"
  else
    ((reported == 0)) || fail "a server with CEL (1.$minor) stored $reported bad WasmApps"
  fi
  k delete -f "$SCENARIO_DIR/invalid/" --ignore-not-found >/dev/null
}

scenario_delete() {
  step "deleting WasmApps removes their Deployments, Services and pods"
  k delete wasmapp --all --wait=true --timeout=120s
  eventually 120 no_owned_objects || fail "Deployments or Services are left: $(k get deploy,svc -o name)"
  eventually 180 no_app_pods || fail "pods are left: $(k get pods -o name)"
}

# run_scenarios NAME...: each in a subshell; a failure is reported and the next one runs.
run_scenarios() {
  local passed=0 failed=0 name failures=()
  for name in "$@"; do
    local t0=$SECONDS
    if (set -euo pipefail; "scenario_$name"); then
      echo "ok: $name ($((SECONDS - t0)) s)"
      passed=$((passed + 1))
    else
      echo "FAILED: $name ($((SECONDS - t0)) s)"
      failed=$((failed + 1))
      failures+=("$name")
    fi
  done
  ((failed == 0)) || echo "failed scenarios: ${failures[*]}"
  echo "cluster e2e: $passed passed, $failed failed"
  ((failed == 0))
}
