"""The dataset catalogue: a filtered, paged grid of datasets, served from the search index's dataset rows."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from portal.models import User
from portal.search import (
    SearchFilters,
    filter_clauses,
    is_postgres,
    parse_query,
    scope_plan,
    scope_token,
)


@dataclass
class CataloguePage:
    total: int = 0
    items: list[dict] = field(default_factory=list)
    offset: int = 0
    limit: int = 24


def catalogue(session: Session, user: User, filters: SearchFilters | None = None, *, q: str = "", offset: int = 0,
              limit: int = 24) -> CataloguePage:
    """Datasets the user may see, newest first, narrowed by the filters (and by words, when `q` has any)."""
    filters = filters or SearchFilters()
    filters.type = "dataset"
    clauses, params = filter_clauses(user, filters)
    source = "search_documents d"
    parsed = parse_query(q)
    if parsed.include and is_postgres(session):
        clauses.append("d.document @@ to_tsquery('simple', :match)")
        params["match"] = parsed.tsquery()
    elif parsed.include:
        source += " JOIN search_fts ON search_fts.rowid = d.id"
        clauses.append("search_fts MATCH :match")
        params["match"] = parsed.fts5()
    where = " AND ".join(clauses)
    total = _count(session, user, filters, parsed) if not is_postgres(session) else None
    if total is None:
        total = session.execute(text(f"SELECT count(*) FROM {source} WHERE {where}"), params).scalar_one()
    page_ids = f"SELECT d.object_id, d.created_at AS created, d.id AS doc_id FROM {source} WHERE {where} ORDER BY d.created_at DESC, d.id DESC LIMIT :limit OFFSET :offset"
    rows = session.execute(text(  # the page is chosen on the index table alone, then joined for its 24 cards
        f"SELECT ds.id, ds.name, ds.status, ds.original_size, ds.pyramid_bytes, ds.width, ds.height, ds.depth, "
        f"ds.modality, ds.created_at, p.id AS project_id, p.name AS project_name, s.code AS subject_code, "
        f"v.code AS visit_code FROM ({page_ids}) page JOIN datasets ds ON ds.id = page.object_id "
        f"JOIN projects p ON p.id = ds.project_id LEFT JOIN subjects s ON s.id = ds.subject_id "
        f"LEFT JOIN visits v ON v.id = ds.visit_id ORDER BY page.created DESC, page.doc_id DESC"),
        {**params, "limit": limit, "offset": offset}).all() if total > offset else []
    items = [dict(id=r.id, name=r.name, status=r.status, size=r.original_size, pyramid_bytes=r.pyramid_bytes,
                  shape=[n for n in (r.depth, r.height, r.width) if n is not None], ndim=3 if r.depth else 2,
                  modality=r.modality, created_at=r.created_at.isoformat() if hasattr(r.created_at, "isoformat") else r.created_at,
                  project={"id": r.project_id, "name": r.project_name}, subject=r.subject_code, visit=r.visit_code,
                  url=f"/datasets/{r.id}", thumbnail=f"/api/v1/datasets/{r.id}/thumbnail.png") for r in rows]
    return CataloguePage(total=total, items=items, offset=offset, limit=limit)


def _count(session: Session, user: User, filters: SearchFilters, parsed) -> int | None:
    """SQLite: count inside the FTS5 index when every filter is a scope token (no row lookups); None otherwise."""
    plan = scope_plan(session, user, filters)
    if plan is None:
        return 0
    groups, clauses, _params = plan
    if clauses:
        return None
    groups = groups + [[scope_token("t", "dataset")]]
    match = parsed.fts5(groups) if parsed.include else " AND ".join(
        "scope : (" + " OR ".join(f'"{t}"' for t in group) + ")" for group in groups)
    return session.execute(text("SELECT count(*) FROM search_fts WHERE search_fts MATCH :m"), {"m": match}).scalar_one()


def human_size(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
