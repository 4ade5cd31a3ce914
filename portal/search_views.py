"""Search and catalogue: `/api/v1/search`, `/api/v1/catalogue` and their pages; thin adapters over portal.search."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy import select

import portal.search_index  # noqa: F401  (registers the after_flush hook that keeps the index current)
from portal.catalogue import catalogue, human_size
from portal.context import db
from portal.models import Dataset, DatasetStatus, Subject, Tag
from portal.permissions import visible_projects
from portal.search import OBJECT_TYPES, SearchError, parse_filters, search

blueprint = Blueprint("search", __name__)
CATALOGUE_PAGE = 24


def _filters(default_limit: int = 20):
    try:
        filters, offset, limit = parse_filters(request.args)
    except SearchError as exc:
        abort(400, str(exc))
    if not request.args.get("limit"):
        limit = default_limit
    return filters, offset, limit


@blueprint.get("/api/v1/search")
def search_api():
    filters, offset, limit = _filters()
    page = search(db(), current_user, request.args.get("q", ""), filters, offset=offset, limit=limit)
    body = dict(total=page.total, offset=offset, limit=limit, results=page.results, facets=page.facets)
    if page.message:
        body["message"] = page.message
    return jsonify(body)


@blueprint.get("/api/v1/catalogue")
def catalogue_api():
    filters, offset, limit = _filters(CATALOGUE_PAGE)
    page = catalogue(db(), current_user, filters, q=request.args.get("q", ""), offset=offset, limit=limit)
    return jsonify(total=page.total, offset=offset, limit=limit, items=page.items)


def _choices(project_id: int | None = None) -> dict:
    """What the filter menus offer: only values from projects the user can see."""
    projects = visible_projects(db(), current_user)
    ids = [p.id for p in projects]
    tags = db().scalars(select(Tag.name).where(Tag.project_id.in_(ids)).distinct().order_by(Tag.name).limit(200))
    subjects = db().scalars(select(Subject).where(Subject.project_id == project_id).order_by(Subject.code)
                            .limit(500)) if project_id in ids else []
    modalities = db().scalars(select(Dataset.modality)
                              .where(Dataset.project_id.in_(ids),
                                     Dataset.modality != "").distinct().limit(100))
    return dict(projects=projects, tags=list(tags), subjects=list(subjects), modalities=sorted(modalities),
                statuses=[s.value for s in DatasetStatus], types=OBJECT_TYPES)


def _page_links(total: int, offset: int, limit: int) -> dict:
    args = {k: v for k, v in request.args.items() if k != "offset"}
    return dict(previous={**args, "offset": max(0, offset - limit)} if offset > 0 else None,
                next={**args, "offset": offset + limit} if offset + limit < total else None,
                first=offset + 1 if total else 0, last=min(total, offset + limit))


@blueprint.get("/search")
def search_page():
    filters, offset, limit = _filters()
    q = request.args.get("q", "")
    page = search(db(), current_user, q, filters, offset=offset, limit=limit) if q.strip() else None
    return render_template("search.html", q=q, page=page, filters=filters, args=request.args,
                           links=_page_links(page.total, offset, limit) if page else None,
                           **_choices(filters.project))


@blueprint.get("/catalogue")
def catalogue_page():
    filters, offset, limit = _filters(CATALOGUE_PAGE)
    page = catalogue(db(), current_user, filters, q=request.args.get("q", ""), offset=offset, limit=limit)
    return render_template("catalogue.html", page=page, filters=filters, args=request.args, human_size=human_size,
                           links=_page_links(page.total, offset, limit), **_choices(filters.project))


