#!/usr/bin/env bash
# The main job on the embedded local default: the cluster is up (make up), so run a sample
# Job to completion on the local node and show where everything is.
set -euo pipefail
kc="$KUBEGYM_STATE/kubeconfig"
k() { kubectl --kubeconfig "$kc" "$@"; }
image=ghcr.io/kubegym/kubegym-runner:0.1.0

echo "== a sample Job on the local node"
k delete job demo-hello --ignore-not-found --wait=true >/dev/null
k create job demo-hello --image="$image" -- python -c 'import platform; print("hello from", platform.node(), "— 6 x 7 =", 6 * 7)'
k wait --for=condition=Complete job/demo-hello --timeout=120s
k logs job/demo-hello
echo
k get nodes -o wide
echo
k get crds -l app.kubernetes.io/part-of=kubegym 2>/dev/null || true
cat <<MSG

The local cluster is running. Reach it with:
  export KUBECONFIG=$kc      # or: export KUBECONFIG=\$(make kubeconfig)
  kubectl get nodes
  eval "\$(make -s env)"       # KUBECONFIG plus the MinIO endpoint and credentials for boto3/aws
Stop everything with: make down
MSG
