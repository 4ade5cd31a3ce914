"""Search over everything, on SQLite (FTS5) and PostgreSQL (tsvector): what it finds, ranking, visibility, upkeep."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from portal.db import session_scope
from portal.models import (Attachment, Dataset, Job, MetadataEntry, Note, Project, Result, Subject, Tag, User,
                            Visit)
from portal.search import SearchFilters, parse_query, search
from portal.search_index import rebuild_index
from tests.conftest import add_search_fixture_project, log_in

HOSTILE = ['"', "'; drop table datasets; --", "*", "-", "NEAR(", "🦴🔬", "a OR b AND", "col:umn", "((", "\\", "%_",
           "title:x", "' OR 1=1 --", "NOT", "-porous", '"unterminated', "ü" * 300, "\x00"]


def seed(settings, owner_email="ana@example.org") -> dict:
    """A project with a subject, a visit and three datasets carrying a note, metadata, tags and DICOM fields."""
    project_id = add_search_fixture_project(settings, owner_email)
    with session_scope(settings.sqlalchemy_url) as session:
        subject = Subject(project_id=project_id, code="S-017", species="Ovis aries", description="femur donor")
        session.add(subject)
        session.flush()
        visit = Visit(project_id=project_id, subject_id=subject.id, code="week4", instrument="Zeiss Xradia",
                      operator="Hanna Berg", visit_date=date(2026, 3, 2))
        session.add(visit)
        session.flush()
        ct = Dataset(project_id=project_id, name="Femur trabecular scan", original_filename="femur_0042.dcm",
                     original_sha256="a" * 64, original_size=5_000_000, status="ready", depth=400, width=512,
                     height=512, modality="CT", description="micro-CT of the distal femur",
                     source_metadata={"Modality": "CT", "StudyDescription": "Knochendichte Studie",
                                      "SeriesDate": "20260302"},
                     subject_id=subject.id, visit_id=visit.id)
        sem = Dataset(project_id=project_id, name="Cortex mosaic", original_filename="cortex_tiles.tif",
                      original_sha256="b" * 64, original_size=2_000_000, status="failed", width=30000, height=30000,
                      modality="SEM", description="backscatter overview mentioning femur once")
        light = Dataset(project_id=project_id, name="Stained section", original_filename="section.ome.tiff",
                        original_sha256="c" * 64, original_size=1_000_000, status="uploaded", modality="light microscopy")
        session.add_all([ct, sem, light])
        session.flush()
        session.add_all([
            Note(project_id=project_id, target_type="dataset", target_id=sem.id, body="Beam drift near the osteon rim"),
            MetadataEntry(project_id=project_id, target_type="dataset", target_id=light.id, key="stain",
                          value_text="hematoxylin"),
            Tag(project_id=project_id, target_type="dataset", target_id=ct.id, name="pilot"),
            Attachment(project_id=project_id, target_type="subject", target_id=str(subject.id),
                       filename="consent_form.pdf", sha256="d" * 64, size=10),
        ])
        return dict(project=project_id, subject=subject.id, visit=visit.id, ct=ct.id, sem=sem.id, light=light.id)


def find(settings, q, email="ana@example.org", **filters):
    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User).where(User.email == email))
        return search(session, user, q, SearchFilters(**filters), limit=50)


def ids(page):
    return [r["id"] for r in page.results]


def test_finds_everything_and_ranks_title_matches_first(settings, make_user):
    make_user()
    made = seed(settings)
    assert ids(find(settings, "trabecular")) == [made["ct"]]  # name
    assert ids(find(settings, "femur_0042")) == [made["ct"]]  # original file name
    assert ids(find(settings, "osteon")) == [made["sem"]]  # a note's word
    assert ids(find(settings, "hematoxylin")) == [made["light"]]  # a metadata value
    assert ids(find(settings, "stain hemat")) == [made["light"]]  # key and a prefix
    assert ids(find(settings, "pilot")) == [made["ct"]]  # a tag
    assert ids(find(settings, "Knochendichte")) == [made["ct"]]  # a DICOM field
    assert ids(find(settings, "xradia", type="dataset")) == [made["ct"]]  # the visit's instrument
    assert {r["type"] for r in find(settings, "S-017").results} == {"subject", "visit", "dataset"}
    femur = find(settings, "femur")
    assert ids(femur)[0] == made["ct"] and made["sem"] in ids(femur)  # the title match first
    assert femur.results[0]["score"] >= femur.results[-1]["score"]
    assert "<mark>" in femur.results[1]["snippet"] and femur.results[0]["title_html"].startswith("<mark>Femur")
    assert ids(find(settings, "femur -trabecular", type="dataset")) == [made["sem"]]
    assert find(settings, "Bone study").results[0]["type"] == "project"
    assert [(r["type"], r["url"]) for r in find(settings, "consent").results] == [("subject", f"/subjects/{made['subject']}")]
    with session_scope(settings.sqlalchemy_url) as session:  # an analysis result, found by its method
        job = Job(kind="segment", queue="analysis", dataset_id=made["ct"])
        session.add(job)
        session.flush()
        result = Result(job_id=job.id, dataset_id=made["ct"], project_id=made["project"], method="watershed",
                        path=f"results/{job.id}", summary={"porosity": 0.231})
        session.add(result)
        session.flush()
        result_id = result.id
    page = find(settings, "watershed")
    assert [(r["type"], r["url"], r["title"]) for r in page.results] == [
        ("result", f"/results/{result_id}", "watershed on Femur trabecular scan")]


@pytest.mark.parametrize("scope_limit", [300, 0], ids=["scope-tokens", "sql-filter"])
def test_a_user_sees_only_the_projects_they_are_in(settings, make_user, monkeypatch, scope_limit):
    monkeypatch.setattr("portal.search.MAX_SCOPE_PROJECTS", scope_limit)  # members of many projects: SQL filter
    make_user()
    make_user("eve@example.org")
    make_user("root@example.org", admin=True)
    seed(settings)
    assert find(settings, "femur").total >= 2
    assert find(settings, "femur", email="root@example.org").total == find(settings, "femur").total
    for q in ("femur", "osteon", "hematoxylin", "pilot", "S-017", "Bone"):
        assert find(settings, q, email="eve@example.org").total == 0
    eve_project = add_search_fixture_project(settings, "eve@example.org", name="Eve's femur project")
    page = find(settings, "femur", email="eve@example.org")
    assert [(r["type"], r["project"]["id"]) for r in page.results] == [("project", eve_project)]


def test_changes_and_deletions_reach_the_index(settings, make_user):
    make_user()
    made = seed(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        session.get(Dataset, made["ct"]).name = "Tibia scan"
        session.get(Subject, made["subject"]).code = "S-999"
        note = session.scalar(select(Note))
        note.body = "vacuum fine"
    assert find(settings, "trabecular").total == 0 and ids(find(settings, "tibia")) == [made["ct"]]
    assert made["ct"] in ids(find(settings, "S-999", type="dataset")) and find(settings, "S-017").total == 0
    assert find(settings, "osteon").total == 0 and ids(find(settings, "vacuum")) == [made["sem"]]
    with session_scope(settings.sqlalchemy_url) as session:
        session.delete(session.scalar(select(Tag)))
        session.delete(session.get(Dataset, made["light"]))
    assert find(settings, "pilot").total == 0 and find(settings, "hematoxylin").total == 0
    with session_scope(settings.sqlalchemy_url) as session:
        session.delete(session.get(Visit, made["visit"]))
    assert find(settings, "xradia").total == 0
    with session_scope(settings.sqlalchemy_url) as session:  # a rebuild gives the same answers
        assert rebuild_index(session) == 4  # the project, the subject, two datasets; no visit
    assert ids(find(settings, "tibia")) == [made["ct"]] and find(settings, "xradia").total == 0
    with session_scope(settings.sqlalchemy_url) as session:
        for dataset in session.scalars(select(Dataset)):
            session.delete(dataset)
        session.flush()
        session.delete(session.get(Project, made["project"]))
    assert find(settings, "tibia").total == 0 and find(settings, "Bone").total == 0


def test_filters(settings, make_user):
    make_user()
    made = seed(settings)
    assert ids(find(settings, "femur", modality="ct")) == [made["ct"]]
    assert ids(find(settings, "femur", ndim=2)) == [made["sem"]]
    assert ids(find(settings, "femur", ndim=3)) == [made["ct"]]
    assert ids(find(settings, "femur", status="failed")) == [made["sem"]]
    assert ids(find(settings, "femur", tag="PILOT")) == [made["ct"]]
    assert ids(find(settings, "femur", type="dataset", date_from=date(2026, 3, 1), date_to=date(2026, 3, 3))) == [made["ct"]]
    assert find(settings, "femur", project=made["project"] + 1).total == 0
    page = find(settings, "femur", type="subject")
    assert [r["type"] for r in page.results] == ["subject"] and page.facets["dataset"] == 2


def test_query_parsing_never_passes_syntax_through():
    parsed = parse_query('femur "NEAR( -osteon* ; drop')
    assert parsed.include == [("femur", False), ("near", False), ("drop", True)] and parsed.exclude == ["osteon"]
    assert parsed.fts5([["zzp1", "zzp2"]]) == \
        '{title body} : ("femur" AND "near" AND "drop"* NOT "osteon") AND scope : ("zzp1" OR "zzp2")'
    assert parsed.tsquery([["zzp1"]]) == "'femur' & 'near' & 'drop':* & !'osteon' & ('zzp1')"
    assert parse_query("-x").include == [] and parse_query("🦴").include == []
    assert parse_query("Éclair").include == [("eclair", True)]


def test_api_hostile_queries_bad_filters_and_pages(settings, client, make_user):
    make_user()
    made = seed(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        session.get(Dataset, made["light"]).name = "<script>alert(1)</script> section"
    log_in(client)
    body = client.get("/api/v1/search?q=trabecular").get_json()
    assert body["total"] == 1 and body["results"][0]["url"] == f"/datasets/{made['ct']}"
    assert body["results"][0]["project"]["name"] == "Bone study"
    for q in HOSTILE:
        response = client.get("/api/v1/search", query_string={"q": q})
        assert response.status_code == 200, (q, response.get_data(as_text=True))
    empty = client.get("/api/v1/search?q=%20").get_json()
    assert empty["total"] == 0 and empty["results"] == [] and "Type a word" in empty["message"]
    for bad in ("type=planet", "ndim=4", "limit=0", "limit=1000", "offset=-1", "from=yesterday", "project=x"):
        response = client.get(f"/api/v1/search?q=femur&{bad}")
        assert response.status_code == 400 and response.get_json()["error"], bad
    paged = [client.get(f"/api/v1/search?q=femur&type=dataset&limit=1&offset={i}").get_json()["results"][0]["id"] for i in range(2)]
    assert paged == [made["ct"], made["sem"]]
    page = client.get("/search?q=script").get_data(as_text=True)
    assert "&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt;" in page and "<script>alert" not in page
    assert 'class="nav-search"' in page and "/catalogue" in page
    assert client.get("/search").status_code == 200 and client.get("/search?q=%22").status_code == 200
    assert client.get("/search?q=femur&ndim=9").status_code == 400
    anonymous = client.application.test_client()
    assert anonymous.get("/api/v1/search?q=femur").status_code == 401
    assert anonymous.get("/search?q=femur").status_code == 302


@pytest.mark.parametrize("q", ["femur", "femur&type=dataset"])
def test_search_page_lists_results(settings, client, make_user, q):
    if "postgresql" in settings.database_url:
        pytest.skip("page rendering is dialect-independent; the API tests cover PostgreSQL")
    make_user()
    seed(settings)
    log_in(client)
    page = client.get(f"/search?q={q}").get_data(as_text=True)
    assert "<mark>Femur</mark> trabecular scan" in page and 'id="search-results"' in page


def test_reindex_command_and_a_broken_index_update_never_loses_a_write(settings, make_user, monkeypatch, caplog):
    from click.testing import CliRunner
    from sqlalchemy import text

    from portal.cli import main

    make_user()
    made = seed(settings)
    with session_scope(settings.sqlalchemy_url) as session:
        session.execute(text("DELETE FROM search_documents"))
    assert find(settings, "trabecular").total == 0
    monkeypatch.setenv("TILESCOPE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TILESCOPE_DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(main, ["search", "reindex"])
    assert result.exit_code == 0 and "6 documents" in result.output, result.output
    assert ids(find(settings, "trabecular")) == [made["ct"]]

    def broken(conn, keys):
        conn.execute(text("SELECT no_such_column FROM search_documents"))

    monkeypatch.setattr("portal.search_index.refresh", broken)
    with session_scope(settings.sqlalchemy_url) as session:
        session.get(Dataset, made["ct"]).name = "Renamed while the index is broken"
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.get(Dataset, made["ct"]).name == "Renamed while the index is broken"
    assert "search index not updated" in caplog.text
