#!/usr/bin/env bash
# Runs the product on embedded defaults: SQLite and Celery's filesystem broker under var/,
# a real Celery worker in the background, and the web server on http://127.0.0.1:${PORT:-8000}/.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}" HF_HUB_OFFLINE=1
VAR="${PMLM_VAR_DIR:-var}"
PORT="${PORT:-8000}"
PY=.venv/bin/python
mkdir -p "$VAR"

$PY manage.py migrate --noinput -v 0
if [ ! -s "$VAR/demo-password" ]; then
  $PY -c "import secrets; print(secrets.token_urlsafe(12))" > "$VAR/demo-password"
  chmod 600 "$VAR/demo-password"
  rm -f "$VAR/.demo-seeded"
fi
PASSWORD="$(cat "$VAR/demo-password")"
if [ ! -e "$VAR/.demo-seeded" ]; then
  # An obstetric clinic: besides the 241 Synthea women (few pregnant today), generated patients with
  # prenatal visits, complications and physicians' advice, about half of them pregnant now.
  echo "Loading the demo cohort (241 Synthea and ${DEMO_SYNTHETIC_PATIENTS:-120} generated patients, WHO guidance; a minute or two)…"
  $PY manage.py seed_demo --password "$PASSWORD" --synthetic-patients "${DEMO_SYNTHETIC_PATIENTS:-120}"
  echo "Training the peer model…"
  $PY manage.py train_peers
  touch "$VAR/.demo-seeded"
fi

# One worker per lane (README: "Running in production"), so a question is never queued behind a long job.
# -B: the interactive worker also runs the beat that sweeps jobs stuck past their limit.
QUEUE="${PMLM_CELERY_QUEUE:-pmlm}"
.venv/bin/celery -A pmlm_site worker -n "interactive@%h" -Q "$QUEUE-interactive" -B --schedule "$VAR/celerybeat-schedule" \
  --pool=solo --loglevel=WARNING > "$VAR/celery-interactive.log" 2>&1 &
INTERACTIVE=$!
# The batch lane yields the CPU to consultations (nice 19): bench/while_batch.py measures the difference.
nice -n 19 .venv/bin/celery -A pmlm_site worker -n "batch@%h" -Q "$QUEUE-batch" --pool=solo --loglevel=WARNING > "$VAR/celery-batch.log" 2>&1 &
BATCH=$!
trap 'kill $INTERACTIVE $BATCH 2>/dev/null || true' EXIT INT TERM

cat <<MSG

  PMLM clinic is running:  http://127.0.0.1:${PORT}/
  Sign in as demo-clinician (pages) or demo-curator (pages and /admin/), password: ${PASSWORD}
  (the password is kept in ${VAR}/demo-password; the Celery workers log to ${VAR}/celery-interactive.log
  and ${VAR}/celery-batch.log)
  Stop with Ctrl+C.

MSG
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload
