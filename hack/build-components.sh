#!/usr/bin/env bash
# Builds the local cluster's upstream binaries from the Go module proxy, cached by version under
# $KUBEGYM_CACHE/bin/<component>-<version>/. A second run with the same versions does nothing.
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and
# points them at ./staging with `replace`, which `go install pkg@version` refuses. The usual way
# out is a wrapper module that requires k8s.io/kubernetes and replaces each staging module with
# the published v0.<minor>.<patch> matching v1.<minor>.<patch>; the list is read from the
# release's own go.mod so it cannot go stale.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${KUBEGYM_CACHE:-$HOME/.cache/kubegym}
export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0

log() { printf '[build] %s\n' "$*" >&2; }

build_kubernetes() {
  local out="$cache/bin/kubernetes-$KUBERNETES_VERSION"
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
  local missing=0
  for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing=1; done
  [ "$missing" = 0 ] && { log "kubernetes $KUBERNETES_VERSION + etcd $ETCD_VERSION: cached in $out"; return; }
  local src="$cache/src/kubernetes-$KUBERNETES_VERSION"
  mkdir -p "$src" "$out"
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  log "kubernetes $KUBERNETES_VERSION: wrapper module in $src (staging modules at $staging)"
  (
    cd "$src"
    go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
    local modfile
    modfile=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod
    {
      echo "module kubegym.io/localcluster-build"
      echo
      echo "go $(awk '$1=="go"{print $2; exit}' "$modfile")"
      echo
      echo "require ("
      echo "	k8s.io/kubernetes $KUBERNETES_VERSION"
      echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
      echo ")"
      echo
      echo "replace ("
      sed -n '/^replace (/,/^)/p' "$modfile" | awk '$2=="=>" && $3 ~ /^\.\/staging/ {printf "\t%s => %s %s\n", $1, $1, "'"$staging"'"}'
      echo ")"
    } > go.mod
    cat > tools.go <<'GO'
//go:build tools

// Package tools pins the commands this module builds.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    go mod tidy -e >/dev/null 2>&1 || true
    go mod download
    for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      [ -x "$out/$b" ] && continue
      log "go build $b"
      go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b"
      mv "$out/$b.tmp" "$out/$b"
    done
    if [ ! -x "$out/etcd" ]; then
      log "go build etcd $ETCD_VERSION"
      go build -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
      mv "$out/etcd.tmp" "$out/etcd"
    fi
  )
}

build_minio() {
  local out="$cache/bin/minio-$MINIO_VERSION"
  [ -x "$out/minio" ] && { log "minio $MINIO_VERSION: cached in $out"; return; }
  log "minio $MINIO_VERSION: go install"
  mkdir -p "$out"
  GOBIN="$out" go install -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION"
}

build_mc() {
  local out="$cache/bin/mc-$MC_VERSION"
  [ -x "$out/mc" ] && { log "mc $MC_VERSION: cached in $out"; return; }
  log "mc $MC_VERSION: go install"
  mkdir -p "$out"
  GOBIN="$out" go install -ldflags "-s -w" "github.com/minio/mc@$MC_VERSION"
}

build_helm() {
  local out="$cache/bin/helm-$HELM_VERSION"
  [ -x "$out/helm" ] && { log "helm $HELM_VERSION: cached in $out"; return; }
  log "helm $HELM_VERSION: go install"
  mkdir -p "$out"
  GOBIN="$out" go install -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# MLflow is a Python application: a venv of its own (never the project's, whose pins it would fight),
# marked complete by a stamp file written last, so an interrupted install is redone, not trusted.
build_mlflow() {
  local out="$cache/mlflow-$MLFLOW_VERSION"
  [ -x "$out/bin/mlflow" ] && [ -f "$out/.complete" ] && { log "mlflow $MLFLOW_VERSION: cached in $out"; return; }
  log "mlflow $MLFLOW_VERSION: pip install into $out"
  rm -rf "$out"
  "${PYTHON:-python3}" -m venv "$out"
  # Every dependency pinned (hack/mlflow-constraints.txt, pip freeze of a working install), so a
  # fresh machine gets the server the tests were written against.
  "$out/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$(dirname "$0")/mlflow-constraints.txt" "mlflow==$MLFLOW_VERSION"
  "$out/bin/mlflow" --version >/dev/null
  touch "$out/.complete"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kubernetes minio mc helm mlflow)
for t in "${targets[@]}"; do "build_$t"; done
