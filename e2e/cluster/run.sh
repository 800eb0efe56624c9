#!/usr/bin/env bash
# The cluster suite on a real Kubernetes 1.20.2 built on this machine (scripts/cluster.sh): the
# cluster comes up in its own network namespace, the test modules go to its local registry, the
# chart is installed with helm (CRD included, unmodified), the node installer prepares the node,
# the operator runs, and the scenarios of e2e/cluster/scenarios.sh (shared with the kind suite)
# run against it with kubectl as a user would. The cluster is torn down on exit, pass or fail.
#
#   e2e/cluster/run.sh [SCENARIO...]   run all scenarios, or the named ones
#   WASMKUBE_CLUSTER_KEEP=1 e2e/cluster/run.sh   leave the cluster up (scripts/cluster.sh down)
#   WASMKUBE_CLUSTER_REUSE=1 e2e/cluster/run.sh  run against a cluster kept up by an earlier run
#
# How the operator and the installer run there: e2e/cluster/lib.sh.
set -euo pipefail
# shellcheck source=e2e/cluster/lib.sh disable=SC1091
source "$(dirname "$0")/lib.sh"
# shellcheck source=e2e/cluster/scenarios.sh disable=SC1091
source "$ROOT/e2e/cluster/scenarios.sh"
# No edge node here (read by the placement scenario).
# shellcheck disable=SC2034
EDGE_NODE=

scenario_no_route_out() {
  step "the cluster's network namespace has no route off the machine"
  [[ -z $(ip -n "$NETNS" route show default) ]] || fail "the namespace has a default route"
  [[ -z $(ip -n "$NETNS" -6 route show default) ]] || fail "the namespace has an IPv6 default route"
  if ip -n "$NETNS" route get 192.0.2.1 >/dev/null 2>&1; then fail "192.0.2.1 is routable"; fi
  if ip -n "$NETNS" route get 169.254.169.254 >/dev/null 2>&1; then fail "the metadata address is routable"; fi
  local links
  links=$(ip -n "$NETNS" -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -v '^veth' | sort | paste -sd' ')
  [[ $links == "cni0 lo" || $links == "lo" ]] || fail "unexpected interfaces in the namespace: $links"
  grep -q '^AWS_EC2_METADATA_DISABLED=true$' <(tr '\0' '\n' <"/proc/$(cat "$STATE/pid/kubelet")/environ") \
    || fail "the kubelet runs without AWS_EC2_METADATA_DISABLED=true"
}

trap teardown EXIT
trap 'exit 130' INT TERM
if [[ ${WASMKUBE_CLUSTER_REUSE:-0} == 1 && -f $STATE/pid/operator ]]; then
  echo "==> reusing the cluster in $STATE"
else
  bring_up
fi
if (($#)); then
  run_scenarios "$@"
else
  run_scenarios no_route_out hello wordcounts http listener exec scale placement bad_module \
    beside_runc memory invalid invalid_table delete
fi
