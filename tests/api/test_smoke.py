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
