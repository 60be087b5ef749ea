#!/usr/bin/env bash
# Makes sure Debian's `postgresql` package (initdb, pg_ctl, postgres) is installed.
# The tests start their own server in a temp folder on loopback; the system cluster and its
# service are not used.
set -euo pipefail
has_pg() {
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1
}
if has_pg; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ganops tests need PostgreSQL: run 'sudo apt-get install postgresql' and try again." >&2
    exit 1
fi
echo "Installing PostgreSQL from Debian (apt-get install postgresql)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The post-install may try to start the system cluster; in a container without an init
# system that step fails harmlessly, and the tests never use it.
apt-get install -y -qq --no-install-recommends postgresql >/dev/null || has_pg
has_pg
