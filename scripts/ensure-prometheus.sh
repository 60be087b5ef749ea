#!/usr/bin/env bash
# Makes sure the Debian `prometheus` package (prometheus + promtool) is installed.
# The demo and the tests start their own Prometheus on loopback; the system service is not used.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ganops needs Prometheus: run 'sudo apt-get install prometheus' and try again." >&2
    exit 1
fi
echo "Installing Prometheus from Debian (apt-get install prometheus)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package's post-install tries to start a system service; none is needed, and in a
# container without an init system that step may fail harmlessly.
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# A system instance, if one was started, would hold port 9090; ours use their own ports.
command -v prometheus >/dev/null && command -v promtool >/dev/null
