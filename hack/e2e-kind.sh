#!/usr/bin/env bash
# The e2e tier on kind, for machines with a Docker engine (not run where there is none).
# Creates a kind cluster, builds and loads kubegym's images, starts MinIO in the cluster, and
# runs tests/e2e with KUBEGYM_TEST_KUBECONFIG pointing at kind.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cluster=${KIND_CLUSTER:-kubegym}
command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "e2e-kind needs a running Docker engine" >&2; exit 1; }
command -v kind >/dev/null || GOBIN="${KUBEGYM_CACHE:-$HOME/.cache/kubegym}/bin" go install sigs.k8s.io/kind@v0.30.0
export PATH="${KUBEGYM_CACHE:-$HOME/.cache/kubegym}/bin:$PATH"
source "$here/hack/versions.env"
kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --image "kindest/node:$KUBERNETES_VERSION" --wait 120s
docker build -f "$here/Dockerfile.operator" -t ghcr.io/kubegym/kubegym-operator:dev "$here"
docker build -f "$here/Dockerfile.runner" -t ghcr.io/kubegym/kubegym-runner:dev "$here"
kind load docker-image --name "$cluster" ghcr.io/kubegym/kubegym-operator:dev ghcr.io/kubegym/kubegym-runner:dev
kubeconfig=$(mktemp)
kind get kubeconfig --name "$cluster" > "$kubeconfig"
KUBEGYM_TEST_KUBECONFIG="$kubeconfig" KUBEGYM_RUNNER_IMAGE=ghcr.io/kubegym/kubegym-runner:dev \
  "${VENV:-$HOME/.cache/kubegym/venv}/bin/python" -m pytest -p no:cacheprovider "$here/tests/e2e"
