"""Search latency on 100,000 datasets (+ notes, metadata, tags), SQLite FTS5 and PostgreSQL tsvector."""

# .venv/bin/python benchmarks/search.py                          # both databases, 100,000 datasets
# .venv/bin/python benchmarks/search.py --datasets 10000 --only sqlite
#
# Fills a fresh database (a SQLite file in a temporary folder; a new PostgreSQL database created
# next to --postgres-url and dropped afterwards) with bulk Core inserts, migrated to head: 200
# projects, 25 subjects and 2 visits each, the datasets spread over them, notes on 20 %, metadata
# on 20 %, tags on 30 %. Builds the index with portal.search_index.rebuild_index, then times
# portal.search.search (count, facets, ranked page of 20 with snippets: what /api/v1/search does)
# for a user who is a member of 20 projects, and for an admin; median and p95 over --runs runs.

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portal.catalogue import catalogue
from portal.db import dispose_engines, session_factory
from portal.migrations import upgrade
from portal.models import (
    Dataset,
    Membership,
    MetadataEntry,
    Note,
    Project,
    Subject,
    Tag,
    User,
    Visit,
)
from portal.search import SearchFilters, search
from portal.search_index import rebuild_index

PROJECTS, MEMBER_PROJECTS, SUBJECTS_PER_PROJECT = 200, 20, 25
WORDS = ["bone", "cortex", "femur", "tibia", "porosity", "scan", "section", "overview", "stack", "mosaic", "slice", "region", "sample", "lab", "mouse", "sheep", "implant", "titanium", "graphite", "cement", "concrete", "fibre", "polymer", "batch", "pilot", "follow-up", "baseline"]
MODALITIES = ["CT", "micro-CT", "SEM", "light microscopy", "FIB-SEM"]
STAINS = ["hematoxylin", "eosin", "toluidine", "alizarin", "vonkossa", "safranin", "masson", "giemsa"]
QUERIES = [  # (label, q, filters)
    ("rare word (5 docs)", "zyxomorph", {}),
    ("common word (~50 %)", "sample", {}),
    ("prefix trabec* (~10 %)", "trabec", {}),
    ("metadata value", "alizarin", {}),
    ("two words", "femur porosity", {}),
    ("common word, 3D only", "sample", {"ndim": 3}),
    ("common word, one project", "sample", {"project": 1}),
]


def fill(url: str, n: int) -> None:
    """Users, projects, memberships, subjects, visits, datasets and annotations, by bulk Core inserts."""
    rng = random.Random(42)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(User.__table__), [
            dict(id=1, email="admin@bench", name="", password_hash="x", is_admin=True, is_active=True, created_at=now),
            dict(id=2, email="member@bench", name="", password_hash="x", is_admin=False, is_active=True, created_at=now)])
        conn.execute(insert(Project.__table__), [dict(id=p, name=f"Project {p} {rng.choice(WORDS)}", description="",
                                                      created_at=now) for p in range(1, PROJECTS + 1)])
        conn.execute(insert(Membership.__table__), [dict(user_id=2, project_id=p, role="viewer", created_at=now)
                                                    for p in range(1, MEMBER_PROJECTS + 1)])
        subjects = [dict(id=i + 1, project_id=i // SUBJECTS_PER_PROJECT + 1, code=f"S-{i:05d}", species="", description="",
                         created_at=now) for i in range(PROJECTS * SUBJECTS_PER_PROJECT)]
        conn.execute(insert(Subject.__table__), subjects)
        visits = [dict(id=2 * s["id"] - 1 + k, project_id=s["project_id"], subject_id=s["id"], code=f"V{k + 1}",
                       visit_date=date(2025, 1, 1) + timedelta(days=rng.randrange(600)), instrument="Xradia 620",
                       operator="", description="", created_at=now) for s in subjects for k in (0, 1)]
        conn.execute(insert(Visit.__table__), visits)
        rows, notes, meta, tags = [], [], [], []
        for i in range(n):
            visit = visits[rng.randrange(len(visits))]
            words = rng.sample(WORDS, 6) + (["sample"] if rng.random() < 0.5 else []) + \
                (["trabecular"] if rng.random() < 0.1 else []) + (["zyxomorph"] if i % (n // 5) == 0 else [])
            modality = rng.choice(MODALITIES)
            dataset_id = str(uuid.UUID(int=rng.getrandbits(128)))
            rows.append(dict(id=dataset_id, project_id=visit["project_id"], name=" ".join(words[:3]) + f" {i}",
                             status=rng.choice(["ready"] * 8 + ["failed", "uploaded"]), status_reason="",
                             original_filename=f"scan_{i:06d}.tif", original_sha256=f"{i:064x}", original_size=10**8,
                             format="TIFF", depth=500 if "CT" in modality else None, width=2048, height=2048,
                             dtype="uint16", unit="micrometer", pyramid_path="", pyramid_info={},
                             source_metadata={"Modality": modality, "StudyDescription": " ".join(words[3:])},
                             subject_id=visit["subject_id"], visit_id=visit["id"], modality=modality,
                             description=" ".join(words), storage_mode="copy", original_location="",
                             created_at=now + timedelta(minutes=i), updated_at=now))
            common = dict(project_id=visit["project_id"], target_type="dataset", target_id=dataset_id, created_at=now)
            if rng.random() < 0.2:
                notes.append(dict(common, body=" ".join(rng.sample(WORDS, 12)), updated_at=now))
            if rng.random() < 0.2:
                stain = rng.choice(STAINS)
                meta.append(dict(common, key="stain", value_type="text", value_text=stain, unit="", updated_at=now))
            if rng.random() < 0.3:
                tags.append(dict(common, name=rng.choice(["pilot", "excluded", "needs review", "qc-passed"])))
        for table, items in ((Dataset, rows), (Note, notes), (MetadataEntry, meta), (Tag, tags)):
            for start in range(0, len(items), 5000):
                conn.execute(insert(table.__table__), items[start:start + 5000])
    engine.dispose()


def timed(fn, runs: int) -> tuple[float, float, object]:
    fn()  # warm caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, round(0.95 * len(times)) - 1)], out


def bench(url: str, n: int, runs: int) -> None:
    started = time.perf_counter()
    upgrade(url)
    fill(url, n)
    filled = time.perf_counter()
    session = session_factory(url)()
    with session.begin():
        documents = rebuild_index(session)
    indexed = time.perf_counter()
    print(f"\n{url.split(':')[0]}: {n} datasets filled in {filled - started:.1f} s; "
          f"{documents} documents indexed in {indexed - filled:.1f} s")
    admin, member = session.get(User, 1), session.get(User, 2)
    print(f"{'query':34} {'user':7} {'hits':>7} {'median ms':>10} {'p95 ms':>8}")
    for label, q, filters in QUERIES:
        for who, user in (("member", member), ("admin", admin)):
            median, p95, page = timed(lambda u=user, q=q, f=filters: search(session, u, q, SearchFilters(**f), limit=20), runs)
            print(f"{label:34} {who:7} {page.total:7d} {median:10.1f} {p95:8.1f}")
            session.rollback()
    for who, user in (("member", member), ("admin", admin)):
        median, p95, page = timed(lambda u=user: catalogue(session, u, SearchFilters(ndim=3, status="ready")), runs)
        print(f"{'catalogue 3D ready, page 1':34} {who:7} {page.total:7d} {median:10.1f} {p95:8.1f}")
    session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="a database on the server where a scratch database is created and dropped")
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as folder:
            bench(f"sqlite:///{folder}/search.db", args.datasets, args.runs)
            dispose_engines()
    if args.only != "sqlite":
        name = f"tilescope_bench_search_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            bench(args.postgres_url.rsplit("/", 1)[0] + f"/{name}", args.datasets, args.runs)
        finally:
            dispose_engines()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
