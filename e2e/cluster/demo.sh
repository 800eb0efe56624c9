#!/usr/bin/env bash
# The demo on a real cluster: Kubernetes 1.20.2 built here (scripts/cluster.sh), the chart
# installed with helm, the examples pushed to the cluster's registry and applied as WasmApps,
# then what a user looks at: the WasmApps, their pods, kubectl logs, a request through the HTTP
# app's Service (port-forward), kubectl exec of a tool module. Everything is torn down on exit
# or Ctrl-C.
set -euo pipefail
# shellcheck source=e2e/cluster/lib.sh disable=SC1091
source "$(dirname "$0")/lib.sh"
# shellcheck source=e2e/cluster/scenarios.sh disable=SC1091
source "$ROOT/e2e/cluster/scenarios.sh"

# show CMD...: prints a command as a user would type it, then runs it.
show() {
  echo
  echo "\$ $*"
  "$@"
}
kubectl() { k "$@"; }
curl() { net /usr/bin/curl "$@"; }

trap teardown EXIT
trap 'exit 130' INT TERM
bring_up

step "the examples as WasmApps"
for f in "$EXAMPLES"/wordcount-{c,zig,as,go}/wasmapp.yaml "$EXAMPLES/http-hello/wasmapp.yaml" \
  "$MANIFESTS/hello.yaml" "$MANIFESTS/tools.yaml"; do
  apply "$f"
done
wait_log hello "hello from wasmkube"
for lang in c zig as go; do wait_log "wordcount-$lang" "8 63 384" 240; done
wait_condition http-hello Ready True 240
wait_condition tools Ready True 240

show kubectl get wasmapps
show kubectl get pods -o wide
show kubectl logs deploy/hello
for lang in c zig as go; do show kubectl logs "deploy/wordcount-$lang"; done
forward http-hello http-hello 18081 8080
show curl -sS -i http://127.0.0.1:18081/
show kubectl exec deploy/tools -- /tools/ls.wasm /
show kubectl get events --field-selector involvedObject.kind=WasmApp
echo
echo "demo: done; tearing the cluster down"
