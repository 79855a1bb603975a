# The two commands of the README:
#   make run   - set up and run a local deployment on loopback (embedded defaults)
#   make test  - set up and run every test
# Everything is installed into .venv (Python packages) and, for tests, from
# Debian's archive (servers used as real peers: see scripts/system-deps.sh).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast system-deps js docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup-venv.sh

system-deps:
	bash scripts/system-deps.sh

# The JavaScript client core and browser app: npm ci from js/package-lock.json, then
# esbuild into ct/webclient/static/ (committed; see scripts/build-js.sh).
js:
	bash scripts/build-js.sh

run: setup
	bash scripts/build-js.sh --optional
	$(PY) -m ct.devrun

test: setup system-deps js
	bash scripts/run-tests.sh

docs: setup
	$(PY) -m ct.settings > docs/settings.md.tmp && mv docs/settings.md.tmp docs/settings.md

clean:
	rm -rf $(VENV) .run _trial_temp* .pytest_cache test-artifacts js/node_modules
