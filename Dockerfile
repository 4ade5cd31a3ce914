# Tilescope image: `docker run IMAGE` serves the portal with gunicorn; `docker run IMAGE tilescope worker` runs a worker.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TILESCOPE_DATA_DIR=/data TILESCOPE_HOST=0.0.0.0

RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY portal ./portal
COPY tiler ./tiler
COPY workers ./workers
COPY frontend ./frontend
COPY alembic ./alembic
COPY alembic.ini wsgi.py ./
RUN pip install -e . && useradd --create-home --uid 1000 tilescope && mkdir -p /data && chown tilescope /data

USER tilescope
VOLUME /data
EXPOSE 8000
# Apply migrations, then serve. Set TILESCOPE_DATABASE_URL, TILESCOPE_REDIS_URL and TILESCOPE_SECRET_KEY in production.
CMD ["sh", "-c", "tilescope db upgrade && exec gunicorn --bind 0.0.0.0:8000 --workers 4 --threads 8 --timeout 3600 wsgi:app"]
