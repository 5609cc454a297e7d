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

.PHONY: run demo test test-sqlite test-postgres install system-deps lint db-check bench translations

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

# The translatable text of the invitee pages, the console and the mail (babel.cfg says where it is): extract it,
# merge it into every catalog under idp_bridge/translations, and compile them (the .mo files ship in the package;
# tests/test_translations.py fails while a catalog lags behind the code). A new language: `make translations NEW=fr`,
# translate idp_bridge/translations/fr/LC_MESSAGES/messages.po, add "fr" to SHIPPED in idp_bridge/locales.py, and
# run `make translations` again.
POT := idp_bridge/translations/messages.pot
translations: install
	$(VENV)/bin/pybabel extract -F babel.cfg -k lazy_gettext -k lazy_ngettext:1,2 --no-location --sort-output -o $(POT) .
	$(if $(NEW),$(VENV)/bin/pybabel init -i $(POT) -d idp_bridge/translations -l $(NEW) -w 120)
	$(VENV)/bin/pybabel update -i $(POT) -d idp_bridge/translations -w 120 --ignore-obsolete --ignore-pot-creation-date
	$(VENV)/bin/pybabel compile -d idp_bridge/translations --statistics
	rm -f $(POT)
