# syntax=docker/dockerfile:1
# Tilescope image, two stages: `builder` makes wheels of every dependency and of Tilescope itself; the runtime
# stage installs only those wheels (no compilers) and runs as the unprivileged user `tilescope` (uid 10001).
#
#   docker build -t tilescope .
#   docker run tilescope                     migrations, then gunicorn serving wsgi:app on 0.0.0.0:8000
#   docker run tilescope tilescope worker    a job worker (Redis, the database and storage must be reachable)
#
# Configuration is TILESCOPE_* environment variables (`tilescope settings` lists them). There is no redis-server
# in the image: point TILESCOPE_REDIS_URL at one. docker-compose.yml wires the image to PostgreSQL, Redis and an
# S3-compatible store; docs/deploy.md explains single-host and multi-host deployments.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: compilers live here only -------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN pip install "setuptools>=77" wheel
WORKDIR /app

# Dependencies first (from pyproject.toml alone), so a code change does not rebuild them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip wheel --wheel-dir /wheels -r /tmp/requirements.txt

# Tilescope itself, as an editable wheel pointing at /app, where the runtime stage puts the same source tree:
# portal/migrations.py finds the Alembic migrations beside the package (/app/alembic), which a regular wheel
# installed into site-packages would not carry.
COPY portal ./portal
COPY tiler ./tiler
COPY workers ./workers
COPY frontend ./frontend
RUN python -c "from setuptools import build_meta; print(build_meta.build_editable('/wheels'))"

# ---- runtime -------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TILESCOPE_DATA_DIR=/data TILESCOPE_HOST=0.0.0.0 TILESCOPE_PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/tilescope-metrics
RUN groupadd --system --gid 10001 tilescope \
 && useradd --system --uid 10001 --gid tilescope --home-dir /home/tilescope --create-home --shell /usr/sbin/nologin tilescope

WORKDIR /app
COPY pyproject.toml README.md alembic.ini wsgi.py ./
COPY alembic ./alembic
COPY portal ./portal
COPY tiler ./tiler
COPY workers ./workers
COPY frontend ./frontend
COPY deploy/web.sh deploy/healthcheck.py ./deploy/
# Only the builder's wheels, from a bind mount: nothing of the builder (compilers, wheel files) stays in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/tilescope-*.whl \
 && python -m compileall -q /app/portal /app/tiler /app/workers /app/frontend /app/alembic /app/wsgi.py \
 && chmod 0755 /app/deploy/web.sh \
 && mkdir -p /data "$PROMETHEUS_MULTIPROC_DIR" \
 && chown tilescope:tilescope /data "$PROMETHEUS_MULTIPROC_DIR"

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
# Liveness of the web server (no dependency touched). A worker container overrides this (docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py", "web"]
# Apply migrations, then serve. With several web replicas run migrations once instead (`tilescope db upgrade`,
# the `migrate` service of docker-compose.yml) and start the replicas with `/app/deploy/web.sh` alone.
CMD ["/app/deploy/web.sh", "--migrate"]
