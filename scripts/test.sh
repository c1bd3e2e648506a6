#!/usr/bin/env bash
# Runs the whole suite. Uses DATABASE_URL and CELERY_BROKER_URL when set (CI: PostgreSQL and
# Redis), otherwise SQLite and the filesystem broker under a throw-away var directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_DEBUG=1 HF_HUB_OFFLINE=1
# Threads of the live test server must not keep connections open past their request.
export DATABASE_CONN_MAX_AGE=0
# Opening a record prefills the local model on the worker; tests that wait on the worker turn it on themselves.
export PMLM_PREFILL_ON_OPEN="${PMLM_PREFILL_ON_OPEN:-0}"
# Importing the WSGI app (the API schema's tests) would warm the retrieval model in a thread; tests load it themselves.
export PMLM_WARM_ON_START="${PMLM_WARM_ON_START:-0}"
export PMLM_VAR_DIR="${PMLM_VAR_DIR:-$(pwd)/var/test}"
mkdir -p "$PMLM_VAR_DIR"

# Browser tests drive Debian's Chromium; install it when missing and we are allowed to.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests…"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core) >/dev/null
  else
    echo "Chromium is missing: install Debian's 'chromium' package (sudo apt-get install chromium)." >&2
    exit 1
  fi
fi

# Lint and format first (pyproject.toml: line length, import order, unused names), so they cannot drift.
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .

exec .venv/bin/pytest "$@"
