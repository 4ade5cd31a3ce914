"""Viewer tokens: tiles served without a session and without a database query; forged or stale tokens refused."""

from sqlalchemy import event

from portal.db import engine_for


def token_for(client, dataset_id):
    return client.get(f"/api/v1/datasets/{dataset_id}/info").json["token"]


def test_a_token_serves_tiles_without_a_session_or_a_database_query(app, settings, logged_in, ready_dataset):
    token = token_for(logged_in, ready_dataset)
    anonymous = app.test_client()
    statements = []
    engine = engine_for(settings.sqlalchemy_url)
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        response = anonymous.get(f"/api/v1/datasets/{ready_dataset}/tiles/0/0/0.jpg?t={token}")
        iiif = anonymous.get(f"/iiif/3/{ready_dataset}/0,0,100,100/max/0/default.png?t={token}")
        thumbnail = anonymous.get(f"/api/v1/datasets/{ready_dataset}/thumbnail.png?t={token}")
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert (response.status_code, iiif.status_code, thumbnail.status_code) == (200, 200, 200)
    assert statements == [], statements


def test_a_token_opens_nothing_but_tiles(app, logged_in, ready_dataset):
    token = token_for(logged_in, ready_dataset)
    anonymous = app.test_client()
    assert anonymous.get(f"/api/v1/datasets/{ready_dataset}?t={token}").status_code == 401
    assert anonymous.get(f"/api/v1/datasets/{ready_dataset}/info?t={token}").status_code == 401
    assert anonymous.get(f"/datasets/{ready_dataset}/view?t={token}").status_code == 302


def test_forged_foreign_and_expired_tokens_are_refused(app, logged_in, ready_dataset, monkeypatch):
    token = token_for(logged_in, ready_dataset)
    anonymous = app.test_client()
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    response = anonymous.get(f"/api/v1/datasets/{ready_dataset}/tiles/0/0/0.jpg?t={forged}")
    assert response.status_code == 403 and "not valid" in response.json["error"]
    other = anonymous.get(f"/api/v1/datasets/00000000-0000-0000-0000-000000000000/tiles/0/0/0.jpg?t={token}")
    assert other.status_code == 403 and "another dataset" in other.json["error"]
    monkeypatch.setattr("portal.access.VIEW_TOKEN_SECONDS", -1)
    expired = anonymous.get(f"/api/v1/datasets/{ready_dataset}/tiles/0/0/0.jpg?t={token}")
    assert expired.status_code == 401 and "expired" in expired.json["error"]


def test_a_token_never_replaces_a_permission_check_on_metadata(app, logged_in, ready_dataset, make_user):
    """Someone else's token must not open info (which hands out fresh tokens) for a user without access."""
    from tests.conftest import log_in

    token = token_for(logged_in, ready_dataset)
    make_user("bob@example.org")
    bob = app.test_client()
    log_in(bob, "bob@example.org")
    assert bob.get(f"/api/v1/datasets/{ready_dataset}/info?t={token}").status_code == 404
    assert bob.get(f"/iiif/3/{ready_dataset}/info.json?t={token}").status_code == 404
    assert bob.get(f"/dzi/{ready_dataset}.dzi?t={token}").status_code == 404
