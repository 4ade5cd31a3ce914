#!/bin/sh
# The web server of the container: migrations first with --migrate, a fresh Prometheus folder, then gunicorn on wsgi:app.
#
# PROMETHEUS_MULTIPROC_DIR must be private to this container (never on a shared volume) and empty at every start:
# gunicorn's processes keep their counters there and /metrics adds them up (portal/metrics.py).
# Tunables: TILESCOPE_PORT (8000), TILESCOPE_WEB_WORKERS (gunicorn processes, 2), GUNICORN_THREADS (8);
# gunicorn also reads FORWARDED_ALLOW_IPS (trust X-Forwarded-Proto from the proxy) and GUNICORN_CMD_ARGS.
set -eu

if [ "${1:-}" = "--migrate" ]; then
    tilescope db upgrade
fi

export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/tilescope-metrics}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete

exec gunicorn \
    --bind "0.0.0.0:${TILESCOPE_PORT:-8000}" \
    --workers "${TILESCOPE_WEB_WORKERS:-2}" \
    --threads "${GUNICORN_THREADS:-8}" \
    --timeout 3600 \
    --graceful-timeout 30 \
    --worker-tmp-dir /dev/shm \
    --no-control-socket \
    --access-logfile - \
    --access-logformat '%(h)s "%(r)s" %(s)s %(b)s %(M)sms' \
    wsgi:app
