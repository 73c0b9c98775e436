"""The app's route table, flattened (FastAPI keeps included routers nested)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import routing


@dataclass
class Route:
    method: str
    path: str  # full path, e.g. /api/projects/{project_id}
    api_route: routing.APIRoute  # carries the dependant (query params) and body field


def api_routes(app) -> list[Route]:
    found = []
    for context in routing.iter_route_contexts(app.routes):
        route = context.route
        if isinstance(route, routing.APIRoute) and context.path.startswith("/api/"):
            for method in sorted(context.methods):
                found.append(Route(method, context.path, route))
    return found
