#!/usr/bin/env bash
# What the tests need beyond Python packages: Debian's chromium and redis-server, the OpenID Provider's npm packages,
# and a PostgreSQL server on 127.0.0.1:5432. Idempotent; safe to run on every test run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian chromium for the end-to-end tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing Debian redis-server for the shared rate-limit storage tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server >/dev/null
fi

if [ -f tests/e2e/op/package-lock.json ] && [ ! -d tests/e2e/op/node_modules ]; then
  echo "installing the test OpenID Provider (npm oidc-provider)"
  (cd tests/e2e/op && npm ci --no-audit --no-fund --loglevel=error)
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
