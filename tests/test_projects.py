"""Projects: create, list mine only, and roles decide who may see and upload."""

from portal.db import session_scope
from portal.models import Membership, Role
from tests.conftest import csrf_token, log_in


def api_headers(client):
    return {"X-CSRFToken": csrf_token(client, "/")}


def test_create_project_from_the_page(logged_in):
    response = logged_in.post("/projects", data={"name": "Bone CT", "description": "tibiae", "csrf_token": csrf_token(logged_in, "/")})
    assert response.status_code == 302
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "Bone CT" in page and "Your role: owner" in page
    assert "Bone CT" in logged_in.get("/").get_data(as_text=True)


def test_project_needs_a_name(logged_in):
    response = logged_in.post("/projects", data={"name": "  ", "csrf_token": csrf_token(logged_in, "/")}, follow_redirects=True)
    assert "A project needs a name" in response.get_data(as_text=True)


def test_api_creates_and_lists_projects(logged_in):
    created = logged_in.post("/api/v1/projects", json={"name": "SEM mosaics"}, headers=api_headers(logged_in))
    assert created.status_code == 201
    listed = logged_in.get("/api/v1/projects").json["projects"]
    assert [p["name"] for p in listed] == ["SEM mosaics"]
    assert logged_in.post("/api/v1/projects", json={}, headers=api_headers(logged_in)).status_code == 400


def test_users_see_only_their_projects(app, logged_in, make_user):
    project_id = logged_in.post("/api/v1/projects", json={"name": "Private"}, headers=api_headers(logged_in)).json["id"]
    make_user("bob@example.org")
    bob = app.test_client()
    log_in(bob, "bob@example.org")
    assert bob.get("/api/v1/projects").json["projects"] == []
    assert bob.get(f"/projects/{project_id}").status_code == 404
    assert bob.get(f"/api/v1/projects/{project_id}/datasets").status_code == 404


def test_admin_sees_every_project(app, logged_in, make_user):
    logged_in.post("/api/v1/projects", json={"name": "Ana's"}, headers=api_headers(logged_in))
    make_user("root@example.org", admin=True)
    admin = app.test_client()
    log_in(admin, "root@example.org")
    assert [p["name"] for p in admin.get("/api/v1/projects").json["projects"]] == ["Ana's"]


def test_viewers_may_look_but_not_upload(app, settings, logged_in, make_user):
    project_id = logged_in.post("/api/v1/projects", json={"name": "Shared"}, headers=api_headers(logged_in)).json["id"]
    viewer_id = make_user("vera@example.org")
    with session_scope(settings.sqlalchemy_url) as session:
        session.add(Membership(user_id=viewer_id, project_id=project_id, role=Role.VIEWER.value))
    vera = app.test_client()
    log_in(vera, "vera@example.org")
    page = vera.get(f"/projects/{project_id}")
    assert page.status_code == 200 and "Upload an image" not in page.get_data(as_text=True)
    response = vera.post(f"/api/v1/projects/{project_id}/datasets", data={"file": (b"x", "a.tif")},
                         headers=api_headers(vera), content_type="multipart/form-data")
    assert response.status_code == 403
    assert "viewer" in response.json["error"]
