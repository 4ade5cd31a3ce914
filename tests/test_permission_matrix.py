"""Every route × every kind of principal: anonymous, share-link holder, outsider, viewer, analyst, owner, admin.

The expected outcome comes from the route's declared policy (portal/policy.py): the test fails when a route
has no policy, when a principal gets in where the policy says no, or is kept out where it says yes.
"""

from __future__ import annotations

import io
import re
from urllib.parse import urlsplit

import pytest

from portal.db import session_scope
from portal.models import Job, Membership, MetadataEntry, Note, Project, Role, Subject, Tag, User, Visit
from portal.policy import POLICIES
from tests.analysis_helpers import disks_image
from tests.conftest import PASSWORD, add_converted_dataset, log_in

PRINCIPALS = ["anonymous", "share_holder", "outsider", "viewer", "analyst", "owner", "admin"]
#: Statuses that mean "the access check let the request through" (what follows may still refuse the input).
PASSED = {200, 201, 202, 204, 302, 303, 304, 400, 409, 410, 413, 415, 422}


@pytest.fixture
def world(settings, app, make_user):
    """Project P (owner, analyst, viewer) with an analysed dataset, a job and a share link; project Q (outsider)."""
    import tifffile

    from portal.shares import create_share_link
    from workers.analyze import analyze_dataset

    emails = {name: f"{name}@example.org" for name in ("owner", "analyst", "viewer", "outsider", "admin")}
    ids = {name: make_user(email, admin=name == "admin") for name, email in emails.items()}
    path = settings.storage_dir("uploads") / "disks.tif"
    tifffile.imwrite(path, disks_image()[0], tile=(256, 256))
    dataset_id = add_converted_dataset(settings, path, name="disks")  # project owned by the first user: owner
    with session_scope(settings.sqlalchemy_url) as session:
        from portal.models import Dataset

        project_id = session.get(Dataset, dataset_id).project_id
        for name in ("analyst", "viewer"):
            session.add(Membership(user_id=ids[name], project_id=project_id, role=Role(name).value))
        other = Project(name="Q")
        other.memberships.append(Membership(user_id=ids["outsider"], role=Role.OWNER.value))
        session.add(other)
        job = Job(kind="segment", queue="analysis", dataset_id=dataset_id, user_id=ids["analyst"],
                  params={"analysis": {"method": "threshold", "algorithm": "otsu"}, "notify": False})
        session.add(job)
        session.flush()
        job_id = job.id
    assert analyze_dataset(job_id, settings) == "finished"
    with session_scope(settings.sqlalchemy_url) as session:
        result = session.get(Job, job_id).result
        link, url = create_share_link(session, settings, result, session.get(User, ids["owner"]))
        subject = Subject(project_id=project_id, code="S-1")
        subject.visits.append(Visit(project_id=project_id, code="baseline"))
        note = Note(project_id=project_id, target_type="dataset", target_id=dataset_id, body="looks fine")
        session.add_all([subject, note,
                         MetadataEntry(project_id=project_id, target_type="dataset", target_id=dataset_id,
                                       key="stain", value_text="H&E"),
                         Tag(project_id=project_id, target_type="dataset", target_id=dataset_id, name="pilot")])
        session.flush()
        values = {"project_id": project_id, "dataset_id": dataset_id, "result_id": result.id, "job_id": job_id,
                  "link_id": link.id, "token": urlsplit(url).path.rsplit("/", 1)[1], "subject_id": subject.id,
                  "visit_id": subject.visits[0].id, "note_id": note.id, "kind": "datasets",
                  "target_id": dataset_id, "key": "stain", "name": "pilot", "user_id": ids["viewer"]}
    owner = client_for(app, {"emails": emails}, "owner")
    attached = owner.post(f"/api/v1/datasets/{dataset_id}/attachments", headers={"X-CSRFToken": csrf(owner)},
                          data={"file": (io.BytesIO(b"a,b\n1,2\n"), "table.csv")}, content_type="multipart/form-data")
    assert attached.status_code == 201, attached.get_json()
    values["attachment_id"] = attached.get_json()["id"]
    analyst = client_for(app, {"emails": emails}, "analyst")
    created = analyst.post(f"/api/v1/projects/{project_id}/uploads",
                           headers={"X-CSRFToken": csrf(analyst), "Tus-Resumable": "1.0.0", "Upload-Length": "10",
                                    "Upload-Metadata": "filename dGFibGUuY3N2"})
    assert created.status_code == 201, created.get_data(as_text=True)
    values["upload_id"] = created.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    return {"emails": emails, "values": values, "share_url": urlsplit(url).path}


def client_for(app, world, principal):
    client = app.test_client()
    if principal == "share_holder":
        assert client.get(world["share_url"]).status_code == 302
    elif principal != "anonymous":
        log_in(client, world["emails"][principal], PASSWORD)
    return client


def csrf(client) -> str:
    page = client.get("/login" if client.get("/").status_code == 302 else "/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def concrete_url(rule, values: dict) -> str:
    url = rule.rule
    formats = {"ext": "jpg", "fmt": "csv" if rule.endpoint == "export.project_manifest" else "jpg"}
    for name in rule.arguments:
        value = {"level": 0, "row": 0, "col": 0, "region": "full", "size": "64,", "rotation": "0",
                 "quality": "default", "filename": "css/app.css", **formats}.get(name, values.get(name))
        assert value is not None, f"the matrix has no value for <{name}> in {rule.rule}: add one"
        url = re.sub(rf"<(?:[a-z]+:)?{name}>", str(value), url)
    return url


def expected(policy, principal: str, rule) -> str:
    """'pass', 'login' (401 or a redirect to the login page), 'forbidden' (403) or 'hidden' (404)."""
    if policy.public:
        return "pass"
    if principal == "anonymous":
        return "login"
    if principal == "share_holder":
        return "pass" if policy.via_share and {"result_id", "dataset_id"} & set(rule.arguments) else "login"
    if policy.admin:
        return "pass" if principal == "admin" else "forbidden"
    if "upload_id" in rule.arguments and principal in ("owner", "admin"):
        return "hidden"  # an upload in progress is its uploader's alone (the analyst made this one)
    if policy.needs is None or principal == "admin":
        return "pass"
    if principal == "outsider":
        return "hidden"
    role = Role(principal)
    return "pass" if role.rank >= policy.needs.rank else "forbidden"


def outcome(response, endpoint: str) -> str:
    if endpoint == "auth.logout" and response.status_code == 302 and "next=" not in response.headers["Location"]:
        return "pass"  # logging out ends on the login page (a login demand would carry next=)
    if response.status_code in (401,) or (response.status_code == 302 and "/login" in response.headers["Location"]):
        return "login"
    if response.status_code == 403:
        return "forbidden"
    if response.status_code == 404:
        return "hidden"
    return "pass" if response.status_code in PASSED else f"status {response.status_code}"


# Reads first, then writes, then deletions (what is deleted first depends on nothing else), then these.
LAST = ["jobs.cancel", "jobs.retry", "results.reproduce", "shares.revoke_share", "auth.logout"]
DELETE_ORDER = ["research_api.delete_note", "research_api.delete_attachment", "research_api.delete_tag",
                "research_api.delete_metadata", "research_api.delete_visit", "research_api.delete_subject"]


def request_order(item) -> tuple:
    rule, method = item
    if rule.endpoint in LAST:
        return (3, LAST.index(rule.endpoint), method)
    if method == "DELETE":
        return (2, DELETE_ORDER.index(rule.endpoint) if rule.endpoint in DELETE_ORDER else -1, rule.endpoint)
    return (0 if method == "GET" else 1, 0, rule.endpoint)


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_every_route_admits_exactly_whom_its_policy_says(app, world, principal):
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    undeclared = sorted({rule.endpoint for rule in rules} - set(POLICIES))
    assert not undeclared, f"routes without an access policy: {undeclared}"
    requests = sorted(((rule, method) for rule in rules for method in rule.methods - {"HEAD", "OPTIONS"}),
                      key=request_order)
    client = client_for(app, world, principal)
    token = csrf(client)
    wrong = []
    for rule, method in requests:
        if rule.endpoint == "shares.open_share" or (rule.endpoint == "auth.login" and method == "POST"):
            continue  # opening the link is what made the share holder; a failed login answers 401 by design
        url = concrete_url(rule, world["values"])
        headers = {"Tus-Resumable": "1.0.0", **({"X-CSRFToken": token} if method != "GET" else {})}
        response = client.open(url, method=method, headers=headers, json={} if method != "GET" else None)
        want, got = expected(POLICIES[rule.endpoint], principal, rule), outcome(response, rule.endpoint)
        response.close()
        if want != got:
            wrong.append(f"{method} {url} ({rule.endpoint}): expected {want}, got {got} {response.status_code}")
    assert not wrong, f"{principal}:\n" + "\n".join(wrong)


def test_an_undeclared_route_is_refused(settings, make_user):
    from portal.app import create_app

    app = create_app(settings)
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: "secret")
    make_user()
    client = app.test_client()
    log_in(client)
    response = client.get("/api/v1/forgotten")
    assert response.status_code == 403 and "no access policy" in response.get_json()["error"]
