#!/usr/bin/env bash
# Installs the JavaScript dependencies from js/package-lock.json (npm ci) and builds the
# browser guest app into ct/webclient/static/ (join.js, join.css). The built files are
# committed and shipped in the Python package, so running the server needs no Node;
# tests/webclient/test_bundle.py fails when they differ from what the sources build.
# Quiet and quick when nothing changed (npm ci runs again only when the lock file did).
set -euo pipefail
cd "$(dirname "$0")/.."

# --optional (make run): without Node, keep the committed bundle and say so.
optional=0
if [ "${1:-}" = "--optional" ]; then
    optional=1
    shift
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$optional" = 1 ]; then
        echo "build-js: no node/npm here; serving the committed ct/webclient/static bundle" >&2
        exit 0
    fi
    echo "build-js: node and npm are needed (make system-deps installs them from Debian)" >&2
    exit 1
fi

stamp=js/node_modules/.ct-lock-installed
if [ ! -f "$stamp" ] || ! cmp -s js/package-lock.json "$stamp"; then
    echo "build-js: npm ci (js/package-lock.json)"
    (cd js && npm ci --no-audit --no-fund --loglevel=error)
    cp js/package-lock.json "$stamp"
fi
node js/build.mjs "$@"
