# Two entry points do all the set-up on a fresh machine:
#   make run    run the service on SQLite with the file mail outbox (http://127.0.0.1:8080)
#   make demo   run it against a real OpenID Provider on this machine, with an org, a key and an invite to redeem
#   make test   install everything the tests need, lint and type-check, then run them on SQLite and on PostgreSQL
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080
OP_PORT ?= 9080
DEMO_DIR ?= demo-instance
PYTEST_ARGS ?=

.PHONY: run demo test test-sqlite test-postgres install system-deps lint db-check bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/idp-bridge serve --host $(HOST) --port $(PORT)

# The OpenID Provider (tests/e2e/op, npm oidc-provider; its packages are installed when missing) on OP_PORT, and
# idp-bridge configured against it on PORT, in DEMO_DIR (made afresh). Prints the invite link and the login; Ctrl-C stops both.
demo: install
	$(PY) scripts/demo.py --port $(PORT) --op-port $(OP_PORT) --instance-dir $(DEMO_DIR) --idp-bridge $(VENV)/bin/idp-bridge

system-deps:
	bash scripts/test-deps.sh

test: install system-deps lint db-check test-sqlite test-postgres

test-sqlite: install
	IDP_BRIDGE_TEST_DB=sqlite $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

test-postgres: install
	IDP_BRIDGE_TEST_DB=postgres $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check idp_bridge providers webhooks tests bench scripts
	$(PY) -m mypy idp_bridge providers webhooks
	$(PY) -m mypy --explicit-package-bases bench
	$(PY) -m mypy scripts

# The models and the migrations agree: a fresh SQLite database migrated to the newest revision has no drift.
db-check: install
	@tmp=$$(mktemp -d) && export IDP_BRIDGE_INSTANCE_DIR=$$tmp IDP_BRIDGE_DATABASE_URL=sqlite:///$$tmp/check.sqlite3 && \
	$(VENV)/bin/idp-bridge db upgrade && $(VENV)/bin/idp-bridge db check; status=$$?; rm -rf $$tmp; exit $$status

bench: install
	$(PY) bench/bulk_invite.py
	$(PY) bench/scim.py
