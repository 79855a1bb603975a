#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers, and makes sure the
# databases the storage tests need are running. Idempotent; quiet when all is there.
set -euo pipefail

packages=(haproxy coturn chromium chromium-driver tinyproxy-bin)
# Node and npm build the JavaScript client (scripts/build-js.sh) and run its tests; a Node
# installed otherwise (e.g. a newer one) is used as it is.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    packages+=(nodejs npm)
fi
if [ "${CT_TEST_PACKAGING:-0}" = 1 ]; then
    # Building and checking the Debian packages (tests/packaging).
    packages+=(dpkg-dev debhelper dh-virtualenv lintian python3-venv build-essential systemd)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "system-deps: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        # coturn's package starts nothing by default; make sure no daemon holds 3478.
        if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
            systemctl stop coturn || true
        fi
    else
        echo "system-deps: not root; tests needing ${missing[*]} will be skipped" >&2
    fi
fi

# Databases: start them if they are installed but stopped.
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "system-deps: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if [ -x /usr/sbin/mariadbd ] && ! (echo > /dev/tcp/127.0.0.1/3306) 2>/dev/null; then
    echo "system-deps: starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    for _ in $(seq 1 30); do (echo > /dev/tcp/127.0.0.1/3306) 2>/dev/null && break; sleep 1; done
fi
exit 0
