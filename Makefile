# Tilescope: `make run` starts the whole portal, `make test` runs the test suite. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_UPDATED := /tmp/.tilescope-apt-updated
# Two pytest-xdist workers: many tests wait on worker processes, browsers and databases.
PYTEST_ARGS ?= -n 2

.DELETE_ON_ERROR:
.PHONY: run test install install-dev system-run system-test vendor clean help

help:
	@echo "make run    install and start Tilescope (web + worker + embedded Redis) on http://127.0.0.1:8000"
	@echo "make test   install test prerequisites and run the test suite"
	@echo "make vendor re-copy pinned browser libraries from npm into frontend/static/vendor"

run: install system-run
	$(BIN)/tilescope up

test: install-dev system-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Tilescope needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { $(MAKE) --no-print-directory $(APT_UPDATED) && $(SUDO) apt-get install -y --no-install-recommends python3-venv; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

install-dev: $(VENV)/.installed-dev
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

# Debian packages: redis-server for the embedded queue; chromium for the browser tests.
system-run:
	@command -v redis-server >/dev/null || { $(MAKE) --no-print-directory $(APT_UPDATED) && $(SUDO) apt-get install -y --no-install-recommends redis-server; }

system-test: system-run
	@command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || { $(MAKE) --no-print-directory $(APT_UPDATED) && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core; }

$(APT_UPDATED):
	$(SUDO) apt-get update -q
	touch $@

vendor:
	$(PYTHON) scripts/vendor_frontend.py

clean:
	rm -rf $(VENV) .pytest_cache
