# postier: `make run` installs and runs the server, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
# Debian programs the interoperability tests drive (real clients and peers).  They are
# installed with services kept stopped (policy-rc.d): tests start their own on loopback.
SYSTEM_PACKAGES := swaks libnet-ssleay-perl fetchmail getmail6 isync dovecot-imapd

.PHONY: run test lint typecheck unit system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(RUN_STAMP)

## run: install postier in .venv and serve ./data on loopback development ports
run: $(RUN_STAMP)
	$(BIN)/postier serve --demo

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  rcd=/usr/sbin/policy-rc.d; own=""; \
	  if [ ! -e $$rcd ]; then own=1; printf '#!/bin/sh\nexit 101\n' | $$SUDO tee $$rcd >/dev/null; $$SUDO chmod +x $$rcd; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  status=$$?; [ -n "$$own" ] && $$SUDO rm -f $$rcd; [ $$status = 0 ] || exit $$status; \
	fi

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

unit: $(DEV_STAMP)
	$(BIN)/pytest -n 2 tests

## test: ruff, mypy --strict and the whole pytest suite
test: system-deps $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n 2 tests

bench: $(DEV_STAMP)
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
