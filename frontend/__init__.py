"""Jinja templates and static assets (plain ES modules, vendored libraries) of the portal."""
