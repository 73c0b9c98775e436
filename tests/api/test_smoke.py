def test_health_answers_ok(server):
    with server.client() as client:
        response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"].startswith("req_")


def test_a_tenant_sees_its_project(tenant):
    with tenant.as_key() as client:
        response = client.get(f"/api/projects/{tenant.project_id}")
    assert response.status_code == 200
    assert response.json()["teamId"] == tenant.team_id


def test_the_server_settles_its_garbage_collector_at_start_up(server):
    """Started, the server has moved its own objects out of the collector's reach and lets
    the collector run every 10,000 allocations instead of Python's 700: a first import of
    100,000 tests ran 13 full collections at 700 (app.py GC_YOUNG_THRESHOLD)."""
    import gc

    from redline.server.app import GC_YOUNG_THRESHOLD

    assert server.url  # (the fixture's server has run its start-up)
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD == 10_000
    assert gc.get_freeze_count() > 0
