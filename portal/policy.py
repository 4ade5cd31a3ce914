"""The access policy of every route, in one table; a route without a declared policy is refused (fails closed).

`enforce_policy` runs before every request: it lets the public routes through, lets a signed viewer
token stand in for the session on the pixel routes that allow it, lets share-link holders reach the
read-only routes of the result they hold, and asks everyone else to log in. Which *object* a user may
touch is then decided by the view with `portal.permissions` (the project role `needs`); the
permission-matrix test checks both halves for every route and every kind of principal.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, jsonify, redirect, request, url_for
from flask_login import current_user

from portal.access import has_view_token
from portal.models import Role
from portal.shares import holds_share_links

MACHINE_PREFIXES = ("/api/", "/iiif/", "/dzi/")  # answered with JSON errors, never with a login page


@dataclass(frozen=True)
class Policy:
    """Who may call a route: `public`, else logged-in users (admins only with `admin`), with the project
    role `needs` checked by the view; `via_token` / `via_share` admit viewer tokens / share-link holders."""

    public: bool = False
    needs: Role | None = None
    admin: bool = False
    via_token: bool = False
    via_share: bool = False


PUBLIC = Policy(public=True)
LOGGED_IN = Policy()
READ = Policy(needs=Role.VIEWER)
WRITE = Policy(needs=Role.ANALYST)
MANAGE = Policy(needs=Role.OWNER)
PIXELS = Policy(needs=Role.VIEWER, via_token=True, via_share=True)
SHARED_READ = Policy(needs=Role.VIEWER, via_share=True)
ADMIN = Policy(admin=True)

POLICIES: dict[str, Policy] = {
    # open to anyone
    "static": PUBLIC, "auth.login": PUBLIC, "shares.open_share": PUBLIC,
    # liveness, readiness, Prometheus metrics (/metrics: the view asks for TILESCOPE_METRICS_TOKEN or an admin when the token is set)
    "health.health": PUBLIC, "health.ready": PUBLIC, "health.metrics": PUBLIC,
    # any logged-in user; lists show only what the user may see
    "auth.logout": LOGGED_IN, "auth.list_sessions": LOGGED_IN, "auth.end_other_sessions": LOGGED_IN,
    "accounts.account_page": LOGGED_IN, "accounts.change_password": LOGGED_IN,
    "pages.index": LOGGED_IN, "pages.create_project": LOGGED_IN,
    "api.list_projects": LOGGED_IN, "api.create_project": LOGGED_IN, "analysis.methods": LOGGED_IN,
    "jobs.jobs_page": LOGGED_IN, "jobs.list_jobs": LOGGED_IN,
    # projects and datasets
    "pages.project": READ, "api.list_datasets": READ, "pages.dataset": READ, "pages.viewer": READ,
    "api.get_dataset": READ, "results.dataset_results": READ,
    "pages.upload": WRITE, "api.upload_dataset": WRITE, "analysis.submit": WRITE,
    # pixels: tiles, IIIF, Deep Zoom (a viewer token or a share link may stand in for the session)
    "tiles.tile": PIXELS, "tiles.thumbnail": PIXELS, "tiles.histogram": PIXELS, "tiles.info": SHARED_READ,
    "iiif.iiif_image": PIXELS, "iiif.dzi_image_tile": PIXELS,
    "iiif.iiif_base": READ, "iiif.iiif_info": READ, "iiif.dzi_descriptor": READ,
    # jobs
    "jobs.get_job": READ, "jobs.job_page": READ, "jobs.cancel": WRITE, "jobs.retry": WRITE,
    # results, their overlay and tables, shares
    "results.result_page": SHARED_READ, "results.get_result": SHARED_READ, "results.measurements_csv": SHARED_READ,
    "results.provenance_json": SHARED_READ, "result_tiles.label_info": SHARED_READ,
    "result_tiles.label_tile": PIXELS, "result_tiles.objects": SHARED_READ, "result_tiles.object_at": SHARED_READ,
    "results.reproduce": WRITE, "shares.list_shares": WRITE, "shares.create_share": WRITE,
    "shares.revoke_share": WRITE,
    # research data: subjects, visits, dataset fields, measures, metadata, tags, notes, attachments, history
    "research_api.list_subjects": READ, "research_api.get_subject": READ, "research_api.list_visits": READ,
    "research_api.get_visit": READ, "research_api.list_measures": READ, "research_api.longitudinal": READ,
    "research_api.list_metadata": READ, "research_api.list_tags": READ, "research_api.list_notes": READ,
    "research_api.list_attachments": READ, "research_api.download_attachment": READ, "research_api.history": READ,
    "research_api.create_subject": WRITE, "research_api.update_subject": WRITE, "research_api.delete_subject": WRITE,
    "research_api.create_visit": WRITE, "research_api.update_visit": WRITE, "research_api.delete_visit": WRITE,
    "research_api.update_dataset": WRITE, "research_api.add_measure": WRITE, "research_api.set_metadata": WRITE,
    "research_api.delete_metadata": WRITE, "research_api.add_tag": WRITE, "research_api.remove_tag": WRITE,
    "research_api.add_note": WRITE, "research_api.update_note": WRITE, "research_api.delete_note": WRITE,
    "research_api.upload_attachment": WRITE, "research_api.delete_attachment": WRITE,
    "research_pages.subjects": READ, "research_pages.subject": READ, "research_pages.visit": READ,
    "research_pages.measures": READ,
    # resumable uploads (tus): analysts and owners; each upload is its uploader's alone (404 for anyone else)
    "uploads.options": LOGGED_IN, "uploads.upload_page": WRITE, "uploads.create": WRITE,
    "uploads.upload_resource": WRITE, "uploads.patch": WRITE, "uploads.terminate": WRITE,
    # search and the catalogue: any logged-in user; results only from projects the user may see
    "search.search_page": LOGGED_IN, "search.search_api": LOGGED_IN, "search.catalogue_page": LOGGED_IN,
    "search.catalogue_api": LOGGED_IN,
    # users: site admins only (the views keep the last active admin and stop admins demoting themselves)
    "accounts.users_page": ADMIN, "accounts.list_users": ADMIN, "accounts.create_user_api": ADMIN,
    "accounts.update_user": ADMIN, "accounts.reset_password": ADMIN,
    # export (downloads are audited by the views)
    "export.download_original": READ, "export.download_pyramid": READ, "export.project_manifest": READ,
}


def enforce_policy():
    """Before every request: refuse undeclared routes; require a login unless the route's policy admits the caller."""
    if request.endpoint is None:
        return None  # no such route: the router answers 404/405
    policy = POLICIES.get(request.endpoint)
    if policy is None:
        abort(403, f"no access policy is declared for {request.endpoint}; refused")
    if policy.public or (policy.via_token and has_view_token()):
        return None  # token requests are checked by the view, without a database query
    if current_user.is_authenticated:
        if policy.admin and not current_user.is_admin:
            abort(403, "only site admins may do this")
        return None
    if policy.via_share and holds_share_links():
        return None
    if request.path.startswith(MACHINE_PREFIXES):
        return jsonify(error="login required", status=401), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
