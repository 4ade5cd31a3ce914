"""Search over everything a user may see: FTS5 with bm25 on SQLite, tsvector with ts_rank on PostgreSQL.

User input is never passed to the database as query syntax: it is cut into word tokens (letters and digits,
accents folded), which become an FTS5 expression or a tsquery built here from quoted terms. The last word, and any
word ending in `*`, matches as a prefix; a word starting with `-` excludes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from markupsafe import Markup, escape
from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from portal.models import Membership, User

OBJECT_TYPES = ("dataset", "subject", "visit", "project", "result")
TERM_CAP = 200_000  # characters of body text per document
MAX_TOKENS = 12
MAX_LIMIT = 100
MAX_OFFSET = 10_000
FACET_LIMIT = 20_000  # counts by kind are given up to this many matches
MAX_SCOPE_PROJECTS = 300  # a member of more projects is filtered in SQL instead
WORD = re.compile(r"[^\W_]+")
QUERY_WORD = re.compile(r"(?:(?<!\S)(-))?([^\W_]+)(\*?)")  # "-" excludes only at a word's start
EMPTY_MESSAGE = "Type a word to search for (letters or digits)."


class SearchError(ValueError):
    """A filter or paging value that cannot be used; the message says which and why."""


def fold(value: str) -> str:
    """Lower case without accents: how both databases compare words."""
    decomposed = unicodedata.normalize("NFKD", value.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def tokens(value: str) -> list[str]:
    return WORD.findall(fold(value))


def term_text(value: str) -> str:
    """The words of `value`, space separated: what PostgreSQL's tsvector is built from."""
    return " ".join(tokens(value[:TERM_CAP]))


def is_postgres(conn_or_session) -> bool:
    bind = conn_or_session.get_bind() if isinstance(conn_or_session, Session) else conn_or_session
    return bind.dialect.name == "postgresql"


@dataclass
class ParsedQuery:
    include: list[tuple[str, bool]] = field(default_factory=list)  # (word, prefix)
    exclude: list[str] = field(default_factory=list)

    def fts5(self, scope: list[list[str]] = ()) -> str:
        """The words restricted to title and body, AND each group of scope tokens (any one of a group)."""
        terms = " AND ".join(f'"{word}"' + ("*" if prefix else "") for word, prefix in self.include)
        words = "{title body} : (" + terms + "".join(f' NOT "{word}"' for word in self.exclude) + ")"
        return " AND ".join([words] + ["scope : (" + " OR ".join(f'"{t}"' for t in group) + ")" for group in scope])

    def tsquery(self, scope: list[list[str]] = ()) -> str:
        """The same for PostgreSQL. Words carry no weight labels, which would make GIN recheck every row; a word
        that happens to equal a scope token (weight D, ranked 0) can only narrow the results, never widen them."""
        terms = [f"'{word}'" + (":*" if prefix else "") for word, prefix in self.include]
        terms += [f"!'{word}'" for word in self.exclude]
        return " & ".join(terms + ["(" + " | ".join(f"'{t}'" for t in group) + ")" for group in scope])


def scope_token(kind: str, value) -> str:
    """One word naming a filter value, e.g. zzp17 (project 17), zztdataset, zzn3, zzsready, zzmmicroct."""
    return "zz" + kind + "".join(tokens(str(value)))


def scope_tokens(project_id, object_type, ndim=None, status="", modality="") -> str:
    values = [("p", project_id), ("t", object_type), ("n", ndim), ("s", status), ("m", modality)]
    return " ".join(scope_token(kind, value) for kind, value in values if value)


def parse_query(q: str) -> ParsedQuery:
    parsed = ParsedQuery()
    matches = list(QUERY_WORD.finditer(fold(q or "")[:1000]))[:MAX_TOKENS]
    for index, match in enumerate(matches):
        minus, word, star = match.groups()
        if minus:
            parsed.exclude.append(word)
        else:
            last = index == len(matches) - 1 and not q.endswith(('"', " "))
            parsed.include.append((word, bool(star) or (last and len(word) >= 2)))
    if not parsed.include:
        parsed.exclude.clear()  # "-x" alone would mean "everything but x": not a search
    return parsed


@dataclass
class SearchFilters:
    project: int | None = None
    subject: int | None = None
    type: str | None = None
    modality: str | None = None
    ndim: int | None = None
    status: str | None = None
    tag: str | None = None
    date_from: date | None = None
    date_to: date | None = None


def parse_filters(args) -> tuple[SearchFilters, int, int]:
    """Filters, offset and limit from query-string arguments; SearchError names the bad one."""
    def number(name, low, high, default=None):
        raw = (args.get(name) or "").strip()
        if not raw:
            return default
        if not raw.lstrip("-").isdigit() or not low <= int(raw) <= high:
            raise SearchError(f"{name} must be a whole number from {low} to {high}")
        return int(raw)

    def day(name):
        raw = (args.get(name) or "").strip()
        try:
            return date.fromisoformat(raw) if raw else None
        except ValueError:
            raise SearchError(f"{name} must be a date like 2026-03-31") from None

    kind = (args.get("type") or "").strip() or None
    if kind and kind not in OBJECT_TYPES:
        raise SearchError(f"type must be one of {', '.join(OBJECT_TYPES)}")
    ndim = number("ndim", 2, 3)
    filters = SearchFilters(project=number("project", 1, 2**31 - 1), subject=number("subject", 1, 2**31 - 1), type=kind,
                            modality=(args.get("modality") or "").strip()[:60] or None, ndim=ndim,
                            status=(args.get("status") or "").strip()[:20] or None,
                            tag=(args.get("tag") or "").strip()[:100] or None,
                            date_from=day("from"), date_to=day("to"))
    return filters, number("offset", 0, MAX_OFFSET, 0), number("limit", 1, MAX_LIMIT, 20)


def filter_clauses(user: User, filters: SearchFilters, *, with_type: bool = True) -> tuple[list[str], dict]:
    """WHERE fragments over search_documents `d` (all values bound) for visibility and the filters."""
    clauses, params = [], {}
    if not user.is_admin:
        clauses.append("d.project_id IN (SELECT m.project_id FROM memberships m WHERE m.user_id = :user_id)")
        params["user_id"] = user.id
    simple = [("project", "d.project_id = :project"), ("subject", "d.subject_id = :subject"), ("ndim", "d.ndim = :ndim"), ("status", "d.status = :status"),
              ("modality", "lower(d.modality) = lower(:modality)"), ("date_from", "d.object_date >= :date_from"),
              ("date_to", "d.object_date <= :date_to")]
    if with_type:
        simple.append(("type", "d.object_type = :type"))
    for name, clause in simple:
        value = getattr(filters, name)
        if value is not None:
            clauses.append(clause)
            params[name] = value
    if filters.tag:
        clauses.append("EXISTS (SELECT 1 FROM tags t WHERE t.target_type = d.object_type AND t.target_id = d.object_id"
                       " AND lower(t.name) = lower(:tag))")
        params["tag"] = filters.tag
    return clauses, params


@dataclass
class SearchPage:
    total: int = 0
    results: list[dict] = field(default_factory=list)
    facets: dict[str, int] = field(default_factory=dict)
    message: str = ""


def scope_plan(session: Session, user: User, filters: SearchFilters):
    """Filters as scope-token groups (matched inside the full-text index) plus SQL for the rest; None: nothing visible."""
    groups: list[list[str]] = []
    sql = SearchFilters(subject=filters.subject, tag=filters.tag, date_from=filters.date_from, date_to=filters.date_to)
    clauses, params = filter_clauses(user, sql)
    if not user.is_admin:
        visible = set(session.scalars(select(Membership.project_id).where(Membership.user_id == user.id)))
        if filters.project is not None:
            visible &= {filters.project}
        if not visible:
            return None
        if len(visible) <= MAX_SCOPE_PROJECTS:
            clauses, params = filter_clauses(User(is_admin=True), sql)  # visibility is in the scope tokens
            groups.append([scope_token("p", p) for p in sorted(visible)])
    elif filters.project is not None:
        groups.append([scope_token("p", filters.project)])
    for kind, value in (("n", filters.ndim), ("s", filters.status), ("m", filters.modality)):
        if value:
            groups.append([scope_token(kind, value)])
    return groups, clauses, params


def search(session: Session, user: User, q: str, filters: SearchFilters | None = None, *, offset: int = 0,
           limit: int = 20) -> SearchPage:
    """Ranked documents matching `q` in the projects `user` may see (admins: all), best first."""
    filters = filters or SearchFilters()
    parsed = parse_query(q)
    if not parsed.include:
        return SearchPage(message=EMPTY_MESSAGE)
    plan = scope_plan(session, user, filters)
    if plan is None:
        return SearchPage()
    groups, clauses, params = plan
    typed = groups + [[scope_token("t", filters.type)]] if filters.type else groups
    if is_postgres(session):
        joined = source = "search_documents d"
        id_column, match, order = "d.id", "d.document @@ to_tsquery('simple', :match)", "DESC"
        # ranked by the words alone: the scope tokens sit at the end of the vector and would reward short documents
        score = "ts_rank('{0, 0, 0.4, 1}', d.document, to_tsquery('simple', :words))"
        as_match = parsed.tsquery
    else:
        joined = "search_fts CROSS JOIN search_documents d ON d.id = search_fts.rowid"  # CROSS: the index drives
        source = joined if clauses else "search_fts"  # filters that are all scope tokens need no join
        id_column, match, order = "search_fts.rowid", "search_fts MATCH :match", "ASC"
        score = "bm25(search_fts, 10.0, 1.0, 0.0)"
        as_match = parsed.fts5
    where = " AND ".join([match, *clauses])
    typed_params = {**params, "match": as_match(typed)}
    if is_postgres(session):  # one pass counts every kind: a count alone would cost as much
        facets = {row.object_type: row.n for row in session.execute(text(
            f"SELECT d.object_type, count(*) AS n FROM {joined} WHERE {where} GROUP BY d.object_type"),
            {**params, "match": as_match(groups)})}
        total = facets.get(filters.type, 0) if filters.type else sum(facets.values())
    else:  # FTS5 counts fast without the join; kinds need it, so they are counted up to FACET_LIMIT matches
        total = session.execute(text(f"SELECT count(*) FROM {source} WHERE {where}"), typed_params).scalar_one()
        facets = {row.object_type: row.n for row in session.execute(text(
            f"SELECT object_type, count(*) AS n FROM (SELECT d.object_type FROM {joined} WHERE {where} "
            f"LIMIT {FACET_LIMIT + 1}) hits GROUP BY object_type"), {**params, "match": as_match(groups)})}
        if sum(facets.values()) > FACET_LIMIT:
            facets = {}
    if total <= offset:
        return SearchPage(total=total, facets=facets)
    ranked = session.execute(text(f"SELECT {id_column} AS id, {score} AS score FROM {source} WHERE {where} "
                                  f"ORDER BY score {order}, {id_column} LIMIT :limit OFFSET :offset"),
                             {**typed_params, "words": parsed.tsquery(), "limit": limit, "offset": offset}).all()
    scores = {row.id: float(row.score) * (-1 if order == "ASC" else 1) for row in ranked}
    rows = session.execute(text(
        "SELECT d.id, d.object_type, d.object_id, d.project_id, d.title, d.body, d.modality, d.ndim, d.status, "
        "p.name AS project_name FROM search_documents d JOIN projects p ON p.id = d.project_id WHERE d.id IN :ids")
        .bindparams(bindparam("ids", expanding=True)), {"ids": list(scores)}).all()
    words = parsed.include
    results = [dict(type=r.object_type, id=r.object_id, title=r.title, snippet=str(snippet(r.body, words)),
                    title_html=str(mark(r.title, words)), project={"id": r.project_id, "name": r.project_name},
                    modality=r.modality, ndim=r.ndim, status=r.status,
                    url=object_url(r.object_type, r.object_id), score=round(scores[r.id], 6))
               for r in sorted(rows, key=lambda r: list(scores).index(r.id))]
    return SearchPage(total=total, results=results, facets=facets)


def object_url(object_type: str, object_id: str) -> str:
    """The page of an object: /datasets/<id>, /results/<id>, /projects/<id>, /subjects/<id>, /visits/<id>."""
    return f"/{object_type}s/{object_id}"


def _matches(word: str, words: list[tuple[str, bool]]) -> bool:
    folded = fold(word)
    return any(folded.startswith(w) if prefix else folded == w for w, prefix in words)


def mark(value: str, words: list[tuple[str, bool]]) -> Markup:
    """`value` HTML-escaped, with the words that match wrapped in <mark>."""
    out, last = [], 0
    for match in WORD.finditer(value):
        if _matches(match.group(), words):
            out += [escape(value[last:match.start()]), Markup("<mark>"), escape(match.group()), Markup("</mark>")]
            last = match.end()
    out.append(escape(value[last:]))
    return Markup("").join(out)


def snippet(body: str, words: list[tuple[str, bool]], width: int = 180) -> Markup:
    """About `width` characters of `body` around its first match, escaped and marked; its start if none matches."""
    first = next((m.start() for m in WORD.finditer(body or "") if _matches(m.group(), words)), 0)
    start = max(0, first - width // 3)
    if start:
        start = body.find(" ", start) + 1 or start
    piece = " ".join(body[start:start + width].split())
    return Markup("").join([Markup("… " if start else ""), mark(piece, words),
                            Markup(" …" if start + width < len(body) else "")])
