# kubegym — every entry point a developer or CI needs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

KUBEGYM_CACHE ?= $(HOME)/.cache/kubegym
VENV ?= $(KUBEGYM_CACHE)/venv
PY := $(VENV)/bin/python
KUBERNETES_VERSION := $(shell sed -n 's/^KUBERNETES_VERSION=//p' hack/versions.env)
KUBE_BIN := $(KUBEGYM_CACHE)/bin/kubernetes-$(KUBERNETES_VERSION)
HELM_VERSION := $(shell sed -n 's/^HELM_VERSION=//p' hack/versions.env)
HELM_BIN := $(KUBEGYM_CACHE)/bin/helm-$(HELM_VERSION)
HELM := $(HELM_BIN)/helm

export KUBEGYM_CACHE VENV
export KUBEGYM_STATE ?= $(CURDIR)/.state
# The test tiers run on a cluster of their own, so `make test` passes whatever `make demo` left
# running (and the demo survives a test run): another state folder, other free ports.
TEST_STATE ?= $(CURDIR)/.state-test
export PYTHONPATH := $(CURDIR)/api:$(CURDIR)/operator:$(CURDIR)/runner:$(CURDIR)/cli:$(CURDIR)/hack
export PATH := $(VENV)/bin:$(KUBE_BIN):$(HELM_BIN):$(PATH)
LOCAL := $(PY) -m kubegym_localcluster
PYTEST := $(PY) -m pytest -p no:cacheprovider --durations=15

.PHONY: help deps venv components up down kubeconfig env demo test lint typecheck unit integration e2e chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

deps: ## install Debian packages the project needs (idempotent)
	@bash hack/install-deps.sh

venv: ## the Python environment (cached under ~/.cache/kubegym)
	@bash hack/ensure-venv.sh

components: ## build the pinned Kubernetes, etcd, MinIO, mc (MinIO client), Helm, and install MLflow's server (cached)
	@bash hack/build-components.sh kubernetes minio mc helm mlflow

up: deps venv components ## start the local cluster (control plane, local node, MinIO)
	@$(LOCAL) up

down: ## stop every process of the local cluster (the demo's and the tests')
	@if [ ! -x $(PY) ]; then echo "nothing to stop"; exit 0; fi; \
	for state in $(KUBEGYM_STATE) $(TEST_STATE); do \
	  if [ -d "$$state" ]; then KUBEGYM_STATE="$$state" $(LOCAL) down; fi; \
	done

kubeconfig: ## print the local cluster's kubeconfig path
	@echo "$(KUBEGYM_STATE)/kubeconfig"

demo: up ## bring everything up and run the main job on the local cluster
	@bash hack/demo.sh

lint: venv ## ruff (lint + format) and the import layering contract
	@ruff check .
	@ruff format --check .
	@lint-imports

typecheck: venv ## mypy over every package
	@mypy

unit: deps venv helm ## unit tier: pure logic, no cluster (promtool and helm lint the chart and the metrics)
	@$(PYTEST) tests/unit

integration: up ## integration tier: against the local cluster
	@$(PYTEST) tests/integration

e2e: up ## e2e tier: the whole path on the local cluster
	@$(PYTEST) tests/e2e

chaos: up ## chaos tier: faults injected into the local cluster (operator, pods, MinIO, API server, the whole cluster)
	@$(PYTEST) tests/chaos

test: lint typecheck unit integration e2e chaos ## every test tier

# Every tier that needs a cluster runs on the tests' own (see TEST_STATE above).
test integration e2e chaos: export KUBEGYM_STATE := $(TEST_STATE)

env: ## print shell exports for the local cluster (KUBECONFIG, MinIO endpoint and credentials)
	@$(LOCAL) env

e2e-kind: venv ## the e2e tier on kind (needs a Docker engine; not used by make test)
	@bash hack/e2e-kind.sh

# --- packaging: images, Helm chart, Argo CD ---------------------------------------------------
IMAGE_REGISTRY ?= ghcr.io/kubegym
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DOCKER ?= docker

.PHONY: helm packaging hyperparameters helm-lint images

helm: ## build the pinned helm from the Go module proxy (cached)
	@bash hack/build-components.sh helm

packaging: venv ## regenerate the chart's CRDs (copies of crds/) and examples/argocd/argocd-cm.yaml + its docs snippet
	@$(PY) hack/kubegym_packaging.py

hyperparameters: venv ## regenerate api/kubegym_api/hyperparameter_table.py from the installed SB3/sb3-contrib signatures
	@$(PY) hack/gen_hyperparameters.py

helm-lint: venv helm ## helm lint + template the chart; fail if its generated files are stale
	@$(PY) hack/kubegym_packaging.py --check
	@$(HELM) lint --strict charts/kubegym
	@$(HELM) template kubegym charts/kubegym --namespace kubegym-system --kube-version $(KUBERNETES_VERSION) >/dev/null
	@echo "charts/kubegym: lint and template OK"

images: ## build the operator image and the runner image (CPU, and CUDA as <tag>-cuda) with Docker
	@command -v $(DOCKER) >/dev/null || { echo "make images needs $(DOCKER) (a Docker engine or compatible)" >&2; exit 1; }
	$(DOCKER) build -f Dockerfile.operator -t $(IMAGE_REGISTRY)/kubegym-operator:$(IMAGE_TAG) .
	$(DOCKER) build -f Dockerfile.runner --build-arg VARIANT=cpu -t $(IMAGE_REGISTRY)/kubegym-runner:$(IMAGE_TAG) .
	$(DOCKER) build -f Dockerfile.runner --build-arg VARIANT=cuda -t $(IMAGE_REGISTRY)/kubegym-runner:$(IMAGE_TAG)-cuda .
