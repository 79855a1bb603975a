#!/usr/bin/env bash
# Runs the whole test suite from the project's virtual environment.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-artifacts
.venv/bin/python -m pytest "$@"
rc=$?
# pytest exits 5 when no test ran: that is a failure for us too.
exit $rc
