"""The Flask portal: settings, models, auth, permissions, pages, JSON API, uploads, tiles."""
