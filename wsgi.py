"""WSGI entry point for gunicorn: `gunicorn wsgi:app`."""

from portal.app import create_app

app = create_app()
