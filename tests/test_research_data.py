"""Research data: subjects → visits → datasets, typed metadata, tags, notes, attachments, measures, pages, escaping."""

from __future__ import annotations

import csv
import hashlib
import io

from sqlalchemy import select

from portal.db import session_scope
from portal.models import AuditEvent, Dataset, Membership, Project, Role
from tests.conftest import csrf_token, log_in, post_multipart

XSS = "<script>alert(1)</script>"
XSS_FILE = "<img src=x onerror=alert(1)>.txt"  # a file name keeps no "/": it would be cut to its last part


def headers(client):
    return {"X-CSRFToken": csrf_token(client, "/")}


def make_project_with_datasets(settings, client, count=2) -> tuple[int, list[str]]:
    """A project owned by the logged-in user with `count` plain dataset rows (no pyramids needed here)."""
    project_id = client.post("/api/v1/projects", json={"name": "Bone study"}, headers=headers(client)).json["id"]
    with session_scope(settings.sqlalchemy_url) as session:
        ids = []
        for n in range(count):
            dataset = Dataset(project_id=project_id, name=f"scan {n}", original_filename=f"scan{n}.tif",
                              original_sha256=f"{n}" * 64, original_size=1, format="TIFF")
            session.add(dataset)
            session.flush()
            ids.append(dataset.id)
    return project_id, ids


def add_member(settings, make_user, project_id, email, role):
    user_id = make_user(email)
    if role is not None:
        with session_scope(settings.sqlalchemy_url) as session:
            session.add(Membership(user_id=user_id, project_id=project_id, role=role.value))


def test_subject_visits_datasets_annotations_and_history(settings, logged_in):
    client = logged_in
    h = headers(client)
    project_id, (first, second) = make_project_with_datasets(settings, client)

    subject = client.post(f"/api/v1/projects/{project_id}/subjects", json={"code": "S-017", "species": "mouse"}, headers=h)
    assert subject.status_code == 201, subject.json
    sid = subject.json["id"]
    assert client.post(f"/api/v1/projects/{project_id}/subjects", json={"code": "S-017"}, headers=h).status_code == 409
    assert client.post(f"/api/v1/projects/{project_id}/subjects", json={"code": ""}, headers=h).status_code == 400
    base = client.post(f"/api/v1/subjects/{sid}/visits", json={"code": "baseline", "visit_date": "2026-01-10",
                                                              "instrument": "microCT", "operator": "ana"}, headers=h)
    week4 = client.post(f"/api/v1/subjects/{sid}/visits", json={"code": "week 4", "visit_date": "2026-02-07"}, headers=h)
    assert base.status_code == week4.status_code == 201
    bad_date = client.post(f"/api/v1/subjects/{sid}/visits", json={"code": "x", "visit_date": "10/01/2026"}, headers=h)
    assert bad_date.status_code == 400 and "YYYY-MM-DD" in bad_date.json["error"]

    # assign datasets (a visit implies its subject) and describe them
    assigned = client.patch(f"/api/v1/datasets/{first}", json={"visit_id": base.json["id"], "modality": "CT",
                                                               "reason": "from the lab book"}, headers=h)
    assert assigned.status_code == 200 and assigned.json["subject_id"] == sid
    client.patch(f"/api/v1/datasets/{second}", json={"visit_id": str(week4.json["id"])}, headers=h)
    assert [v["datasets"] for v in client.get(f"/api/v1/subjects/{sid}").json["visits"]] == [[first], [second]]

    # subject modify with a reason
    patched = client.patch(f"/api/v1/subjects/{sid}", json={"species": "rat", "reason": "typo"}, headers=h)
    assert patched.json["species"] == "rat"

    # metadata of every type, and a bad one
    api = f"/api/v1/subjects/{sid}"
    for entry in ({"key": "sex", "type": "text", "value": "F"}, {"key": "weight", "type": "number", "value": "21.5", "unit": "g"},
                  {"key": "born", "type": "date", "value": "2025-11-02"}, {"key": "pilot", "type": "bool", "value": True}):
        assert client.post(f"{api}/metadata", json=entry, headers=h).status_code == 201
    for bad in ({"key": "weight", "type": "number", "value": "heavy"}, {"key": "d", "type": "date", "value": "yesterday"},
                {"key": "b", "type": "bool", "value": "perhaps"}, {"key": "c", "type": "colour", "value": "red"}):
        response = client.post(f"{api}/metadata", json=bad, headers=h)
        assert response.status_code == 400 and response.json["error"], bad
    client.post(f"{api}/metadata", json={"key": "weight", "type": "number", "value": 23, "unit": "g", "reason": "re-weighed"}, headers=h)
    metadata = {m["key"]: m for m in client.get(f"{api}/metadata").json["metadata"]}
    assert metadata["weight"]["value"] == 23.0 and metadata["weight"]["unit"] == "g"
    assert metadata["born"]["value"] == "2025-11-02" and metadata["pilot"]["value"] is True
    assert client.delete(f"{api}/metadata/sex", json={"reason": "not needed"}, headers=h).status_code == 204

    # tags and notes
    assert client.post(f"{api}/tags", json={"name": "pilot"}, headers=h).status_code == 201
    assert client.post(f"{api}/tags", json={"name": "excluded"}, headers=h).status_code == 201
    assert client.delete(f"{api}/tags/excluded", json={"reason": "back in"}, headers=h).status_code == 204
    assert client.get(f"{api}/tags").json["tags"] == ["pilot"]
    note = client.post(f"{api}/notes", json={"body": "healed well"}, headers=h).json
    assert note["author"] == "ana@example.org" and note["created_at"]
    client.patch(f"/api/v1/notes/{note['id']}", json={"body": "healed very well", "reason": "precision"}, headers=h)

    # attachments: stored as-is, content-addressed, downloaded with the original name
    content = b"id,value\n1,2\n" * 1000
    uploaded = post_multipart(client, f"{api}/attachments", {"file": (io.BytesIO(content), "crf scan.csv"),
                                                             "description": "CRF"}, headers=h)
    assert uploaded.status_code == 201, uploaded.get_data(as_text=True)
    assert uploaded.json["sha256"] == hashlib.sha256(content).hexdigest()
    stored = settings.data_path / "originals" / uploaded.json["sha256"][:2] / uploaded.json["sha256"]
    assert stored.read_bytes() == content
    again = post_multipart(client, f"/api/v1/visits/{base.json['id']}/attachments",
                           {"file": (io.BytesIO(content), "copy.csv")}, headers=h)
    download = client.get(uploaded.json["url"])
    assert download.status_code == 200 and download.data == content
    assert "crf scan.csv" in download.headers["Content-Disposition"]
    download.close()
    with session_scope(settings.sqlalchemy_url) as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "download"))
        assert event.target_type == "attachment" and event.new_values["file"] == "crf scan.csv"
    assert client.delete(uploaded.json["url"].removesuffix("/download"), json={"reason": "wrong file"}, headers=h).status_code == 204
    assert stored.exists()  # still referenced by the visit's attachment
    client.delete(again.json["url"].removesuffix("/download"), headers=h)
    assert not stored.exists()

    # hand-entered measures
    assert client.post(f"/api/v1/datasets/{first}/measures", json={"name": "porosity", "value": 0.2, "unit": "1"}, headers=h).status_code == 201
    assert client.post(f"/api/v1/datasets/{first}/measures", json={"name": "porosity", "value": "n/a"}, headers=h).status_code == 400

    # history of the subject: each change with old/new values and reasons
    events = client.get(f"{api}/history").json["events"]
    actions = [e["action"] for e in events]
    for action in ("create", "modify", "metadata.create", "metadata.modify", "metadata.delete", "tag.create",
                   "tag.delete", "note.create", "note.modify", "attachment.create", "attachment.delete"):
        assert action in actions, action
    modify = next(e for e in events if e["action"] == "modify")
    assert modify["old"] == {"species": "mouse"} and modify["new"] == {"species": "rat"} and modify["reason"] == "typo"
    reweigh = next(e for e in events if e["action"] == "metadata.modify")
    assert reweigh["old"]["value"] == 21.5 and reweigh["new"]["value"] == 23.0 and reweigh["reason"] == "re-weighed"
    assert next(e for e in events if e["action"] == "attachment.delete")["reason"] == "wrong file"
    assert all(e["actor"] == "ana@example.org" and e["at"].endswith("+00:00") for e in events)
    dataset_events = client.get(f"/api/v1/datasets/{first}/history").json["events"]
    assign = next(e for e in dataset_events if e["action"] == "modify")
    assert assign["old"]["visit_id"] is None and assign["new"]["visit_id"] == base.json["id"]
    assert assign["reason"] == "from the lab book"
    history_csv = client.get(f"{api}/history?format=csv").get_data(as_text=True)
    assert "typo" in history_csv and history_csv.startswith("at,actor,action,field,old,new,reason")

    # pages
    for path in (f"/projects/{project_id}", f"/subjects/{sid}", f"/visits/{base.json['id']}", f"/datasets/{first}",
                 f"/projects/{project_id}/subjects", f"/projects/{project_id}/measures"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    timeline = client.get(f"/subjects/{sid}").get_data(as_text=True)
    assert "2026-01-10" in timeline and "microCT" in timeline and "scan 0" in timeline and "porosity" in timeline

    # deleting a visit unassigns its datasets, with its reason kept
    assert client.delete(f"/api/v1/visits/{week4.json['id']}", json={"reason": "duplicate"}, headers=h).status_code == 204
    assert client.get(f"/api/v1/visits/{week4.json['id']}").status_code == 404
    with session_scope(settings.sqlalchemy_url) as session:
        assert session.get(Dataset, second).visit_id is None
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "delete", AuditEvent.target_type == "visit"))
        assert event.reason == "duplicate" and event.old_values["code"] == "week 4"


def test_longitudinal_csv_has_one_row_per_visit(settings, logged_in):
    client = logged_in
    h = headers(client)
    project_id, datasets = make_project_with_datasets(settings, client, count=3)
    values = iter([0.30, 0.25, 0.41])
    plan = [("A", "v1", "2026-01-01"), ("A", "v2", "2026-03-01"), ("B", "v1", "2026-01-15")]
    subjects = {}
    for dataset_id, (code, visit, day) in zip(datasets, plan):
        if code not in subjects:
            subjects[code] = client.post(f"/api/v1/projects/{project_id}/subjects", json={"code": code}, headers=h).json["id"]
        visit_id = client.post(f"/api/v1/subjects/{subjects[code]}/visits", json={"code": visit, "visit_date": day}, headers=h).json["id"]
        client.patch(f"/api/v1/datasets/{dataset_id}", json={"visit_id": visit_id}, headers=h)
        client.post(f"/api/v1/datasets/{dataset_id}/measures", json={"name": "porosity", "value": next(values), "unit": "1"}, headers=h)
    assert client.get(f"/api/v1/projects/{project_id}/measures").json["names"] == ["porosity"]
    response = client.get(f"/api/v1/projects/{project_id}/measures?name=porosity&format=csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["subject"], r["visit"], r["visit_date"], float(r["value"])) for r in rows] == [
        ("A", "v1", "2026-01-01", 0.30), ("A", "v2", "2026-03-01", 0.25), ("B", "v1", "2026-01-15", 0.41)]
    page = client.get(f"/projects/{project_id}/measures?measure=porosity").get_data(as_text=True)
    assert 'id="longitudinal"' in page and page.count('data-subject="A"') == 2
    subjects_csv = client.get(f"/api/v1/projects/{project_id}/subjects?format=csv").get_data(as_text=True)
    assert subjects_csv.splitlines()[0].startswith("id,code") and len(subjects_csv.splitlines()) == 3

    # deleting a subject takes its visits and annotations; its datasets stay, unassigned
    assert client.post(f"/api/v1/subjects/{subjects['B']}/attachments", headers=h).status_code == 400  # no file
    assert client.delete(f"/api/v1/subjects/{subjects['B']}", json={"reason": "withdrew consent"}, headers=h).status_code == 204
    rows = client.get(f"/api/v1/projects/{project_id}/measures?name=porosity").json["rows"]
    assert [r["subject"] for r in rows] == ["A", "A"]
    assert client.get(f"/api/v1/datasets/{datasets[2]}").status_code == 200


def test_permissions_viewer_reads_outsider_404_anonymous_401(app, settings, logged_in, make_user):
    project_id, (dataset_id, _) = make_project_with_datasets(settings, logged_in)
    h = headers(logged_in)
    sid = logged_in.post(f"/api/v1/projects/{project_id}/subjects", json={"code": "S1"}, headers=h).json["id"]
    add_member(settings, make_user, project_id, "vera@example.org", Role.VIEWER)
    add_member(settings, make_user, project_id, "otto@example.org", None)

    vera = app.test_client()
    log_in(vera, "vera@example.org")
    vh = headers(vera)
    assert vera.get(f"/api/v1/subjects/{sid}").status_code == 200
    assert vera.get(f"/api/v1/subjects/{sid}/metadata").status_code == 200
    assert vera.get(f"/subjects/{sid}").status_code == 200
    for method, path, body in (("post", f"/api/v1/projects/{project_id}/subjects", {"code": "S2"}),
                               ("patch", f"/api/v1/subjects/{sid}", {"code": "S9"}),
                               ("delete", f"/api/v1/subjects/{sid}", {}),
                               ("post", f"/api/v1/subjects/{sid}/metadata", {"key": "k", "value": "v"}),
                               ("post", f"/api/v1/subjects/{sid}/notes", {"body": "hi"}),
                               ("patch", f"/api/v1/datasets/{dataset_id}", {"name": "x"})):
        assert getattr(vera, method)(path, json=body, headers=vh).status_code == 403, path
    upload = post_multipart(vera, f"/api/v1/subjects/{sid}/attachments", {"file": (io.BytesIO(b"x"), "a.txt")}, headers=vh)
    assert upload.status_code == 403
    assert "Add subject" not in vera.get(f"/projects/{project_id}/subjects").get_data(as_text=True)

    otto = app.test_client()
    log_in(otto, "otto@example.org")
    oh = headers(otto)
    assert otto.get(f"/api/v1/subjects/{sid}").status_code == 404
    assert otto.get(f"/api/v1/subjects/{sid}/history").status_code == 404
    assert otto.get(f"/subjects/{sid}").status_code == 404
    assert otto.post(f"/api/v1/subjects/{sid}/tags", json={"name": "x"}, headers=oh).status_code == 404
    assert post_multipart(otto, f"/api/v1/subjects/{sid}/attachments", {"file": (io.BytesIO(b"x"), "a.txt")},
                          headers=oh).status_code == 404

    anonymous = app.test_client()
    assert anonymous.get(f"/api/v1/subjects/{sid}").status_code == 401
    assert anonymous.get(f"/api/v1/projects/{project_id}/subjects").status_code == 401
    assert anonymous.get(f"/api/v1/jobs/{sid}/metadata").status_code == 401
    assert logged_in.get(f"/api/v1/jobs/{sid}/metadata").status_code == 404


def test_user_entered_text_is_escaped_in_pages(settings, logged_in):
    client = logged_in
    h = headers(client)
    project_id, (dataset_id, _) = make_project_with_datasets(settings, client)
    sid = client.post(f"/api/v1/projects/{project_id}/subjects", json={"code": XSS}, headers=h).json["id"]
    vid = client.post(f"/api/v1/subjects/{sid}/visits", json={"code": XSS, "visit_date": "2026-01-01"}, headers=h).json["id"]
    client.patch(f"/api/v1/datasets/{dataset_id}", json={"visit_id": vid}, headers=h)
    client.post(f"/api/v1/subjects/{sid}/notes", json={"body": XSS}, headers=h)
    client.post(f"/api/v1/subjects/{sid}/metadata", json={"key": "k", "value": XSS}, headers=h)
    client.post(f"/api/v1/subjects/{sid}/tags", json={"name": XSS}, headers=h)
    post_multipart(client, f"/api/v1/subjects/{sid}/attachments", {"file": (io.BytesIO(b"x"), XSS_FILE)}, headers=h)
    client.post(f"/api/v1/datasets/{dataset_id}/measures", json={"name": XSS, "value": 1}, headers=h)
    for path in (f"/subjects/{sid}", f"/projects/{project_id}", f"/visits/{vid}", f"/datasets/{dataset_id}",
                 f"/projects/{project_id}/measures"):
        page = client.get(path).get_data(as_text=True)
        assert XSS not in page and XSS_FILE not in page, path
    page = client.get(f"/subjects/{sid}").get_data(as_text=True)
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # code, note, metadata value, tag
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in page
    listed = client.get(f"/api/v1/subjects/{sid}/attachments").json["attachments"]
    assert listed[0]["filename"] == XSS_FILE  # stored as given; escaping is the page's job
    csv_text = client.get(f"/api/v1/projects/{project_id}/subjects?format=csv").get_data(as_text=True)
    assert XSS in csv_text  # CSV is data, served as an attachment


def test_login_and_failed_login_are_audited(settings, client, make_user):
    make_user()
    assert client.post("/login", data={"email": "ana@example.org", "password": "wrong",
                                       "csrf_token": csrf_token(client)}).status_code == 401
    log_in(client)
    with session_scope(settings.sqlalchemy_url) as session:
        events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        failed = next(e for e in events if e.action == "failed login")
        assert failed.actor == "ana@example.org" and failed.actor_id is None
        login = next(e for e in events if e.action == "login")
        assert login.actor == "ana@example.org" and login.actor_id is not None
        assert session.scalar(select(Project)) is None
