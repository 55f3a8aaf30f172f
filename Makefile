# postier: `make run` installs and runs the server, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
# The modules setup.py compiles with mypyc (src/postier/compiled.py) are built again when
# their sources change: an extension older than its source is not used (compiled.py).
COMPILED_STAMP := $(VENV)/.compiled
COMPILED_SOURCES := setup.py src/postier/compiled.py $(wildcard src/postier/mail/*.py) src/postier/smtp/core.py $(wildcard src/postier/*.c)
PURE_TESTS := tests/unit/mail tests/unit/smtp tests/unit/store/test_words.py tests/properties/test_smtp_fuzz.py tests/properties/test_mail_fuzz.py
# Debian programs the interoperability tests drive (real clients and peers).  They are
# installed with services kept stopped (policy-rc.d): tests start their own on loopback.
SYSTEM_PACKAGES := swaks libnet-ssleay-perl fetchmail getmail6 isync dovecot-imapd
# The C compiler and headers mypyc's modules are built with (setup.py).
BUILD_PACKAGES := gcc python3-dev

.PHONY: run test lint typecheck unit system-deps build-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml setup.py | $(BIN)/python
	@# a C compiler for the compiled modules; without one postier runs them as Python
	-@$(MAKE) -s build-deps || echo "no C compiler installed: postier runs as pure Python"
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(RUN_STAMP) $(COMPILED_STAMP)

$(COMPILED_STAMP): $(COMPILED_SOURCES) | $(DEV_STAMP)
	@echo "building the compiled modules again (mypyc, ~40 s)"
	$(BIN)/pip install -q --no-deps -e .
	touch $@

## run: install postier in .venv and serve ./data on loopback development ports
run: $(RUN_STAMP)
	$(BIN)/postier serve --demo

build-deps:
	@$(MAKE) -s system-deps SYSTEM_PACKAGES="$(BUILD_PACKAGES)"

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
test: system-deps build-deps $(DEV_STAMP) $(COMPILED_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n 2 tests
	@# the compiled modules' own tests once more, run as Python (POSTIER_COMPILED=0)
	POSTIER_COMPILED=0 $(BIN)/pytest -n 2 -q $(PURE_TESTS)

bench: $(DEV_STAMP)
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
