#!/usr/bin/env bash
# Serves the demo at http://127.0.0.1:8000. Ctrl-C stops everything this script started.
set -euo pipefail
export DJANGO_SETTINGS_MODULE=config.settings.local
mkdir -p var
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
# The worker runs the billing calendar (beat) on the filesystem broker: no server needed.
.venv/bin/celery -A config worker --beat --loglevel=INFO --concurrency=1 \
  --schedule var/celerybeat-schedule &
pids+=($!)
echo "Portal: http://127.0.0.1:8000  (demo@example.com / demo-password, admin / admin-password)"
.venv/bin/python manage.py runserver 127.0.0.1:8000 &
pids+=($!)
wait -n "${pids[@]}"
