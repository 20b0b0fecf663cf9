#!/usr/bin/env bash
# The main job on the embedded local default. `make up` has started the local cluster; this
# installs kubegym with its Helm chart (the operator runs as a pod on the local node), trains
# examples/cartpole-ppo.yaml and shows the result. It leaves everything running.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kc="$KUBEGYM_STATE/kubeconfig"
k() { kubectl --kubeconfig "$kc" "$@"; }
step() { printf '\n== %s\n' "$*"; }
# wait_for KIND NAME SECONDS: print the resource's line every 10 s until it succeeds.
wait_for() {
  local deadline=$(( $(date +%s) + $3 )) phase
  while :; do
    phase=$(k get "$1" "$2" -o jsonpath='{.status.phase}')
    k get "$1" "$2" --no-headers
    case "$phase" in Succeeded) return 0 ;; Failed) k describe "$1" "$2"; exit 1 ;; esac
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for $1/$2" >&2; exit 1; }
    sleep 10
  done
}
endpoint=$(python -m kubegym_localcluster env | sed -n 's/^export AWS_ENDPOINT_URL=//p')

# Storage credentials: the operator holds its own MinIO key (the Secret kubegym-storage-operator that
# `make up` put in kubegym-system, the chart's default) and mints each run's (STS); the namespaces
# the runs live in need no storage Secret.
step "kubegym's Helm chart into kubegym-system (operator pod on the local node)"
helm --kubeconfig "$kc" upgrade --install kubegym "$here/charts/kubegym" \
  --namespace kubegym-system --create-namespace \
  --set operator.replicas=1 \
  --set storage.bucket=kubegym --set "storage.endpoint=$endpoint" \
  --wait --timeout 5m
k -n kubegym-system get pods -o wide

step "train examples/cartpole-ppo.yaml (PPO, rl-zoo3 preset, 1e5 steps)"
k apply -f "$here/examples/cartpole-ppo.yaml"
wait_for trainingrun cartpole-ppo 1800

step "the finished run"
k get trainingruns -o wide
echo
k get trainingrun cartpole-ppo -o jsonpath='final evaluation: {.status.result.meanReward} ± {.status.result.stdReward} over {.status.result.episodes} episodes{"\n"}model: {.status.result.modelUri}{"\n"}'

step "benchmark the trained agent (20 episodes x 2 seeds, IQM with 95% bootstrap CIs)"
cat <<YAML | k apply -f -
apiVersion: kubegym.io/v1alpha1
kind: Benchmark
metadata:
  name: cartpole-ppo-eval
spec:
  models:
    - name: cartpole-ppo
      trainingRunRef: {name: cartpole-ppo}
  environments:
    - id: CartPole-v1
  episodes: 20
  seeds: [0, 1]
  nEnvs: 8
YAML
wait_for benchmark cartpole-ppo-eval 900
k get benchmarks
echo
KUBECONFIG="$kc" kubectl-gym compare cartpole-ppo-eval

cat <<MSG

The local cluster is running. Reach it with:
  export KUBECONFIG=$kc      # or: export KUBECONFIG=\$(make kubeconfig)
  kubectl get gym            # TrainingRuns, Benchmarks, Experiments
  eval "\$(make -s env)"       # KUBECONFIG plus the MinIO endpoint and credentials for boto3/aws
Stop everything with: make down
MSG
