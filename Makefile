# The two commands of the README:
#   make run   - set up and run a local deployment on loopback (embedded defaults)
#   make test  - set up and run every test
# Everything is installed into .venv (Python packages) and, for tests, from
# Debian's archive (servers used as real peers: see scripts/system-deps.sh).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast system-deps docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup-venv.sh

system-deps:
	bash scripts/system-deps.sh

run: setup
	$(PY) -m ct.devrun

test: setup system-deps
	bash scripts/run-tests.sh

docs: setup
	$(PY) -m ct.settings > docs/settings.md.tmp && mv docs/settings.md.tmp docs/settings.md

clean:
	rm -rf $(VENV) .run _trial_temp* .pytest_cache test-artifacts
