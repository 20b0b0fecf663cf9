#!/usr/bin/env bash
# The whole path on kind, for machines with a Docker engine (not run where there is none, and
# not part of `make test`, whose e2e tier runs on the local cluster).
#
# Builds the operator and runner images, loads them into a kind cluster at the pinned
# Kubernetes version, starts MinIO in the cluster, installs the chart with its default storage
# pointing there, then trains examples/cartpole-ppo.yaml and benchmarks it, exactly as
# `make demo` does locally.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${KUBEGYM_CACHE:-$HOME/.cache/kubegym}
cluster=${KIND_CLUSTER:-kubegym}
tag=${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/pyproject.toml")}
# shellcheck source=versions.env
source "$here/hack/versions.env"
command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "e2e-kind needs a running Docker engine" >&2; exit 1; }
export PATH="$cache/bin/kind-$KIND_VERSION:$cache/bin/kubernetes-$KUBERNETES_VERSION:$cache/bin/helm-$HELM_VERSION:$PATH"
command -v kind >/dev/null || GOBIN="$cache/bin/kind-$KIND_VERSION" go install "sigs.k8s.io/kind@$KIND_VERSION"
bash "$here/hack/build-components.sh" kubernetes helm

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --image "kindest/node:$KUBERNETES_VERSION" --wait 180s
kc=$(mktemp)
kind get kubeconfig --name "$cluster" > "$kc"
k() { kubectl --kubeconfig "$kc" "$@"; }

make -C "$here" images IMAGE_TAG="$tag"
kind load docker-image --name "$cluster" "ghcr.io/kubegym/kubegym-operator:$tag" "ghcr.io/kubegym/kubegym-runner:$tag"

# MinIO in the cluster with a generated root key, and a regular user for the operator (a policy on
# the bucket alone) whose key is the chart's kubegym-storage-operator Secret: the operator mints
# each run's credentials from it (STS), so no run namespace needs a storage Secret.
user=kubegym-$(openssl rand -hex 4); pass=$(openssl rand -hex 20)
opuser=kubegym-operator; oppass=$(openssl rand -hex 20)
k create namespace kubegym-system --dry-run=client -o yaml | k apply -f -
k -n kubegym-system create secret generic kubegym-s3 --from-literal=AWS_ACCESS_KEY_ID="$user" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$pass" --dry-run=client -o yaml | k apply -f -
k -n kubegym-system create secret generic kubegym-storage-operator --from-literal=AWS_ACCESS_KEY_ID="$opuser" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$oppass" --dry-run=client -o yaml | k apply -f -
k -n kubegym-system apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: minio}
spec:
  selector: {matchLabels: {app: minio}}
  template:
    metadata: {labels: {app: minio}}
    spec:
      containers:
        - name: minio
          image: ${MINIO_IMAGE:-quay.io/minio/minio:latest}
          args: [server, /data]
          env:
            - {name: MINIO_ROOT_USER, valueFrom: {secretKeyRef: {name: kubegym-s3, key: AWS_ACCESS_KEY_ID}}}
            - {name: MINIO_ROOT_PASSWORD, valueFrom: {secretKeyRef: {name: kubegym-s3, key: AWS_SECRET_ACCESS_KEY}}}
          ports: [{containerPort: 9000}]
          volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: minio}
spec: {selector: {app: minio}, ports: [{port: 9000, targetPort: 9000}]}
YAML
k -n kubegym-system rollout status deploy/minio --timeout 180s
policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::kubegym","arn:aws:s3:::kubegym/*"]}]}'
k -n kubegym-system run mkbucket --rm -i --restart=Never --image="${MINIO_MC_IMAGE:-quay.io/minio/mc:latest}" \
  --env MC_HOST_local="http://$user:$pass@minio.kubegym-system:9000" --command -- sh -c \
  'mc mb --ignore-existing local/kubegym && mc admin user add local "$1" "$2" && printf %s "$3" > /tmp/policy.json &&
   mc admin policy create local kubegym-operator /tmp/policy.json && mc admin policy attach local kubegym-operator --user "$1"' \
  mkbucket "$opuser" "$oppass" "$policy"

helm --kubeconfig "$kc" upgrade --install kubegym "$here/charts/kubegym" -n kubegym-system \
  --set operator.image.tag="$tag" --set runner.image.tag="$tag" \
  --set storage.bucket=kubegym --set storage.endpoint=http://minio.kubegym-system:9000 --wait --timeout 5m

k apply -f "$here/examples/cartpole-ppo.yaml"
k wait --for=jsonpath='{.status.phase}'=Succeeded trainingrun/cartpole-ppo --timeout 30m
k get trainingruns -o wide
echo "kind e2e passed; delete the cluster with: kind delete cluster --name $cluster"
