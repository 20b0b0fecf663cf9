#!/usr/bin/env bash
# Debian packages the local cluster and the tests use; installs only what is missing.
set -euo pipefail
need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v mount >/dev/null || need+=(mount)
if [ ${#need[@]} -gt 0 ]; then
  echo "[deps] apt-get install ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "[deps] Go is required to build the local cluster's components (https://go.dev/doc/install)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "[deps] python3 (>= 3.11) is required" >&2; exit 1; }
