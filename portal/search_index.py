"""The search index: one denormalised row per searchable object, kept current by a session `after_flush` hook.

How it stays current: importing this module registers `_after_flush` on the `Session` class, once per process
(`install()` is idempotent). Every session then refreshes, inside its own transaction, the rows of the objects it
flushed: projects, subjects, visits, datasets and results directly, and the target object of any note, metadata
entry, tag or attachment. The web app imports it through `portal.search_views`, and the `tilescope` command
(hence workers, imports and jobs) through `portal.cli`. Bulk Core statements (`session.execute(update(...))`) bypass
ORM events; after such a change, or to fill a new database, run `rebuild_index(session)` /
`tilescope search reindex`. The tables (search_documents, plus search_fts on SQLite) come from the migration
`a7c3e91f5b20`; they are managed with SQL, outside the ORM models.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import click
from sqlalchemy import event, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, attributes

from portal.models import (
    Attachment,
    Dataset,
    MetadataEntry,
    Note,
    Project,
    Result,
    Subject,
    Tag,
    Visit,
)
from portal.search import TERM_CAP, is_postgres, scope_tokens, term_text

log = logging.getLogger(__name__)

ANNOTATIONS = (Note, MetadataEntry, Tag, Attachment)
OWN_TYPES = {Project: "project", Subject: "subject", Visit: "visit", Dataset: "dataset", Result: "result"}
BATCH = 500
_ready_urls: set[str] = set()

INSERT_COLUMNS = ("object_type", "object_id", "project_id", "dataset_id", "subject_id", "visit_id", "title", "body",
                  "scope", "modality", "ndim", "status", "object_date", "created_at")


def insert_sql(postgres: bool) -> str:
    """One INSERT for a document; PostgreSQL also gets its tsvector, built from the same terms SQLite's FTS5 sees."""
    names = ", ".join(INSERT_COLUMNS)
    values = ", ".join(f":{name}" for name in INSERT_COLUMNS)
    if postgres:
        return (f"INSERT INTO search_documents ({names}, document) VALUES ({values}, "
                "setweight(to_tsvector('simple', :title_terms), 'A') || setweight(to_tsvector('simple', :body_terms), 'B') || "
                "setweight(to_tsvector('simple', :scope), 'D'))")
    return f"INSERT INTO search_documents ({names}) VALUES ({values})"


def _flatten(value, prefix: str = "") -> list[str]:
    """'Key value' strings from nested JSON (e.g. DICOM fields in source_metadata)."""
    if isinstance(value, dict):
        return [part for key, item in value.items() for part in _flatten(item, f"{prefix}{key} ")]
    if isinstance(value, (list, tuple)):
        return [part for item in value[:50] for part in _flatten(item, prefix)]
    return [f"{prefix}{value}"]


def _annotations(conn: Connection, target_type: str, ids: list[str]) -> dict[str, list[str]]:
    """Text of the notes, metadata, tags and attachments on each target."""
    texts: dict[str, list[str]] = defaultdict(list)
    queries = [
        select(Note.target_id, Note.body),
        select(MetadataEntry.target_id, MetadataEntry.key + " " + MetadataEntry.value_text + " " + MetadataEntry.unit),
        select(Tag.target_id, Tag.name),
        select(Attachment.target_id, Attachment.filename + " " + Attachment.description),
    ]
    for query in queries:
        model = query.column_descriptions[0]["entity"]
        rows = conn.execute(query.where(model.target_type == target_type, model.target_id.in_(ids)))
        for target_id, value in rows:
            texts[str(target_id)].append(value or "")
    return texts


def _by_id(conn: Connection, model, ids) -> dict:
    ids = [i for i in set(ids) if i is not None]
    if not ids:
        return {}
    return {row.id: row for row in conn.execute(select(model.__table__).where(model.id.in_(ids)))}


def _document(object_type, object_id, project_id, title, parts, *, dataset_id=None, subject_id=None, visit_id=None,
              modality="", ndim=None, status="", object_date=None, created_at=None) -> dict:
    body = "\n".join(p for p in parts if p)[:TERM_CAP]
    scope = scope_tokens(project_id, object_type, ndim, status, modality)
    return dict(object_type=object_type, object_id=str(object_id), project_id=project_id, dataset_id=dataset_id,
                subject_id=subject_id, visit_id=visit_id, title=title or "", body=body, scope=scope,
                modality=modality or "",
                ndim=ndim, status=status or "", object_date=object_date, created_at=created_at,
                title_terms=term_text(title or ""), body_terms=term_text(body))


def build_documents(conn: Connection, object_type: str, ids: list) -> list[dict]:
    """The documents of these objects as the database holds them now (objects that are gone give none)."""
    keys = [str(i) for i in ids]
    notes = _annotations(conn, object_type, keys)
    if object_type == "dataset":
        rows = list(conn.execute(select(Dataset.__table__).where(Dataset.id.in_(keys))))
        subjects = _by_id(conn, Subject, [r.subject_id for r in rows])
        visits = _by_id(conn, Visit, [r.visit_id for r in rows])
        docs = []
        for r in rows:
            subject, visit = subjects.get(r.subject_id), visits.get(r.visit_id)
            parts = [r.description, r.original_filename, r.modality, r.format, r.status, r.status_reason,
                     *(_flatten(r.source_metadata or {})), *notes[r.id]]
            if subject:
                parts += [f"subject {subject.code}", subject.species]
            if visit:
                parts += [f"visit {visit.code}", visit.instrument, visit.operator]
            date = visit.visit_date if visit and visit.visit_date else (r.created_at.date() if r.created_at else None)
            docs.append(_document("dataset", r.id, r.project_id, r.name, parts, dataset_id=r.id,
                                  subject_id=r.subject_id, visit_id=r.visit_id, modality=r.modality,
                                  ndim=3 if r.depth is not None else 2, status=r.status, object_date=date,
                                  created_at=r.created_at))
        return docs
    int_ids = [int(i) for i in keys if i.isdigit()] if object_type != "result" else keys
    if object_type == "project":
        return [_document("project", r.id, r.id, r.name, [r.description, *notes[str(r.id)]],
                          object_date=r.created_at.date() if r.created_at else None, created_at=r.created_at)
                for r in _by_id(conn, Project, int_ids).values()]
    if object_type == "subject":
        return [_document("subject", r.id, r.project_id, r.code, [r.species, r.description, *notes[str(r.id)]],
                          subject_id=r.id, object_date=r.created_at.date() if r.created_at else None,
                          created_at=r.created_at)
                for r in _by_id(conn, Subject, int_ids).values()]
    if object_type == "visit":
        rows = _by_id(conn, Visit, int_ids).values()
        subjects = _by_id(conn, Subject, [r.subject_id for r in rows])
        return [_document("visit", r.id, r.project_id,
                          f"{subjects[r.subject_id].code} · {r.code}" if r.subject_id in subjects else r.code,
                          [r.instrument, r.operator, r.description, str(r.visit_date or ""), *notes[str(r.id)]],
                          subject_id=r.subject_id, visit_id=r.id, object_date=r.visit_date, created_at=r.created_at)
                for r in rows]
    if object_type == "result":
        rows = list(conn.execute(select(Result.__table__, Dataset.name.label("dataset_name"))
                                 .join(Dataset, Dataset.id == Result.dataset_id).where(Result.id.in_(keys))))
        return [_document("result", r.id, r.project_id, f"{r.method} on {r.dataset_name}",
                          [r.method, *_flatten(r.params or {}), *_flatten(r.summary or {}), *notes[r.id]],
                          dataset_id=r.dataset_id, object_date=r.created_at.date() if r.created_at else None,
                          created_at=r.created_at)
                for r in rows]
    return []


def refresh(conn: Connection, keys: set[tuple[str, str]]) -> None:
    """Rewrite the documents of these (type, id) objects, and of the objects whose documents include them."""
    keys = set(keys)
    for object_type, object_id in list(keys):
        column = {"subject": "subject_id", "visit": "visit_id", "dataset": "dataset_id", "project": None}.get(object_type)
        if object_type == "project" and not conn.execute(text("SELECT 1 FROM projects WHERE id = :i"),
                                                         {"i": int(object_id)}).first():
            conn.execute(text("DELETE FROM search_documents WHERE project_id = :i"), {"i": int(object_id)})
        if column:
            value = object_id if column == "dataset_id" else int(object_id)
            for dependant in conn.execute(text(f"SELECT object_type, object_id FROM search_documents WHERE {column} = :v"),
                                          {"v": value}):
                keys.add((dependant.object_type, dependant.object_id))
    by_type: dict[str, list[str]] = defaultdict(list)
    for object_type, object_id in keys:
        by_type[object_type].append(str(object_id))
    sql = text(insert_sql(is_postgres(conn)))
    for object_type, ids in by_type.items():
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            conn.execute(text("DELETE FROM search_documents WHERE object_type = :t AND object_id IN :ids")
                         .bindparams(_expanding("ids")), {"t": object_type, "ids": chunk})
            docs = build_documents(conn, object_type, chunk)
            if docs:
                conn.execute(sql, docs)


def _expanding(name: str):
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


def rebuild_index(session: Session) -> int:
    """Empty the index and build every document again from the database; returns how many were written."""
    conn = session.connection()
    conn.execute(text("DELETE FROM search_documents"))
    sql, written = text(insert_sql(is_postgres(conn))), 0
    for object_type, model in (("project", Project), ("subject", Subject), ("visit", Visit), ("dataset", Dataset),
                               ("result", Result)):
        ids = [str(i) for i in conn.execute(select(model.id).order_by(model.id)).scalars()]
        for start in range(0, len(ids), BATCH):
            docs = build_documents(conn, object_type, ids[start:start + BATCH])
            if docs:
                conn.execute(sql, docs)
            written += len(docs)
    if not is_postgres(conn):
        conn.execute(text("INSERT INTO search_fts(search_fts) VALUES ('optimize')"))
    return written


def index_exists(conn: Connection) -> bool:
    url = str(conn.engine.url)
    if url in _ready_urls:
        return True
    if is_postgres(conn):
        found = conn.execute(text("SELECT to_regclass('search_documents') IS NOT NULL")).scalar()
    else:
        found = conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'search_fts'")).first() is not None
    if found:
        _ready_urls.add(url)
    return bool(found)


def changed_keys(session: Session) -> set[tuple[str, str]]:
    """The (type, id) of every indexed object this flush touched, directly or through an annotation."""
    keys: set[tuple[str, str]] = set()
    for obj in [*session.new, *session.dirty, *session.deleted]:
        state = attributes.instance_state(obj)
        if type(obj) in OWN_TYPES:
            identity = state.identity or (getattr(obj, "id", None),)
            if identity[0] is not None:
                keys.add((OWN_TYPES[type(obj)], str(identity[0])))
        elif isinstance(obj, ANNOTATIONS):
            values = state.dict
            keys.add((values.get("target_type"), str(values.get("target_id"))))
            for name in ("target_type", "target_id"):
                history = state.attrs[name].history
                if history.deleted:  # moved to another object: the old one loses it
                    keys.add((values.get("target_type") if name == "target_id" else history.deleted[0],
                              str(history.deleted[0] if name == "target_id" else values.get("target_id"))))
    return {(t, i) for t, i in keys if t in OWN_TYPES.values() and i not in ("None", "")}


def _after_flush(session: Session, _flush_context) -> None:
    keys = changed_keys(session)
    if not keys:
        return
    conn = session.connection()
    if not index_exists(conn):
        return
    try:
        with conn.begin_nested():  # a failure here must never lose the user's own write
            refresh(conn, keys)
    except Exception:  # logged; `tilescope search reindex` repairs the index
        log.exception("search index not updated for %s", sorted(keys)[:10])


def install() -> None:
    """Register the after_flush hook on every Session of this process (idempotent)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)


install()


@click.group("search")
def search_cli() -> None:
    """The search index over datasets, subjects, visits, projects and results."""


@search_cli.command("reindex")
def reindex_command() -> None:
    """Rebuild the whole search index from the database."""
    from portal.db import session_scope
    from portal.settings import Settings

    with session_scope(Settings.from_env().sqlalchemy_url) as session:
        count = rebuild_index(session)
    click.echo(f"search index rebuilt: {count} documents")


def include_name(name, type_, parent_names) -> bool:
    """Alembic `include_name` hook: the search_* tables are SQL-managed, not ORM models (autogenerate skips them)."""
    return not (type_ == "table" and (name or "").startswith("search_"))
