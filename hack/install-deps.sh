#!/usr/bin/env bash
# Debian packages the local cluster and the tests use; installs only what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)

apt_install() {
  echo "[deps] apt-get install $*" >&2
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v mount >/dev/null || need+=(mount)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi

# Prometheus and promtool (Debian's build, pinned): the observability tests start their own
# Prometheus on a loopback port; promtool lints the operator's metrics.
if [ "$(dpkg-query -W -f='${Version}' prometheus 2>/dev/null || true)" != "$PROMETHEUS_DEB_VERSION" ] \
  || [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/promtool ]; then
  apt_install "prometheus=$PROMETHEUS_DEB_VERSION"
  # The package enables a system-wide Prometheus on :9090 where systemd runs; the tests need
  # only the binaries, so do not leave a daemon behind that nobody asked for.
  if [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now prometheus.service || true
  fi
fi

command -v go >/dev/null || { echo "[deps] Go is required to build the local cluster's components (https://go.dev/doc/install)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "[deps] python3 (>= 3.11) is required" >&2; exit 1; }
