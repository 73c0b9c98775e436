"""Teams, team members and invitations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from redline.server.auth import Principal
from redline.server.deps import Db, current_principal, rate_limited
from redline.server.executions import service as executions
from redline.server.http_errors import validation_error
from redline.server.kit.cookies import session_cookie
from redline.server.kit.pagination import Page
from redline.server.schemas import ERROR_RESPONSES, Deleted, ListPage
from redline.server.teams import schemas, service

router = APIRouter(prefix="/api", tags=["Teams"], responses=ERROR_RESPONSES)
Caller = Annotated[Principal, Depends(rate_limited("projects-teams"))]
TeamId = Annotated[str, Query(alias="teamId", min_length=1, max_length=40)]


@router.get("/teams", response_model=ListPage[schemas.Team], summary="List your teams")
def list_teams(db: Db, caller: Caller, page: Page):
    """All teams the signed-in user belongs to (with an API key: the key's team)."""
    return service.list_teams(db, caller, page)


@router.post("/teams", response_model=schemas.Team, status_code=201, summary="Create a team")
def create_team(body: schemas.TeamCreate, db: Db, caller: Caller):
    """The signed-in user becomes the team's owner."""
    return service.create_team(db, caller, body.name)


@router.get("/teams/{team_id}", response_model=schemas.Team, summary="Get a team")
def get_team(team_id: str, db: Db, caller: Caller):
    return service.get_team(db, caller, team_id)


@router.patch("/teams/{team_id}", response_model=schemas.Team,
              summary="Rename a team or set its execution budget")
def rename_team(team_id: str, body: schemas.TeamUpdate, db: Db, caller: Caller):
    """Admins and owners: `name`, and `executionBudgetSeconds` (runner-seconds of executed
    runs a calendar month may use; null is no limit)."""
    changes = body.model_dump(by_alias=False, exclude_unset=True)
    if body.name is None and ("name" in changes or not changes):
        service.get_team(db, caller, team_id)  # (another tenant's team: NOT_FOUND first)
        raise validation_error("name", "required", "Field 'name' is required")
    if "execution_budget_seconds" in changes:
        executions.set_budget(db, caller, team_id, changes["execution_budget_seconds"])
    if body.name is not None:
        return service.rename_team(db, caller, team_id, body.name)
    return service.get_team(db, caller, team_id)


@router.delete("/teams/{team_id}", response_model=Deleted, summary="Delete a team")
def delete_team(team_id: str, db: Db, caller: Caller):
    """Owners only: deletes the team with all its projects and their data."""
    service.delete_team(db, caller, team_id)
    return {"success": True, "message": "Team deleted successfully"}


@router.get("/team-members", response_model=ListPage[schemas.Member],
            summary="List a team's members")
def list_members(team_id: TeamId, db: Db, caller: Caller, page: Page):
    return service.list_members(db, caller, team_id, page)


@router.post("/team-members", response_model=schemas.Invitation, status_code=201,
             summary="Invite a member")
def invite_member(body: schemas.InvitationCreate, request: Request, db: Db, caller: Caller):
    """Admins and owners invite as admin, member or viewer. The invitation expires after 7
    days. The response carries `acceptUrl` and `acceptToken` once: send them to the invitee."""
    return service.invite(db, caller, body.team_id, body.email, body.role,
                          request.app.state.settings.resolved_public_url)


@router.patch("/team-members/{member_id}", response_model=schemas.Member,
              summary="Change a member's role")
def change_role(member_id: str, body: schemas.MemberUpdate, db: Db, caller: Caller):
    """Owners only. Making another member owner is how ownership is transferred; the last
    owner cannot be demoted."""
    return service.change_role(db, caller, member_id, body.role)


@router.delete("/team-members/{member_id}", response_model=Deleted,
               summary="Remove a member (or leave)")
def remove_member(member_id: str, db: Db, caller: Caller):
    """Owners remove anyone, admins remove members and viewers, anyone may leave; the last
    owner cannot leave."""
    service.remove_member(db, caller, member_id)
    return {"success": True, "message": "Member removed successfully"}


@router.get("/invitations", response_model=ListPage[schemas.Invitation],
            summary="List a team's invitations")
def list_invitations(team_id: TeamId, db: Db, caller: Caller, page: Page):
    return service.list_invitations(db, caller, team_id, page)


@router.delete("/invitations/{invitation_id}", response_model=Deleted,
               summary="Revoke an invitation")
def revoke_invitation(invitation_id: str, db: Db, caller: Caller):
    service.revoke_invitation(db, caller, invitation_id)
    return {"success": True, "message": "Invitation revoked successfully"}


async def _optional_principal(request: Request) -> Principal | None:
    has_credentials = (request.headers.get("x-api-key") or request.headers.get("authorization")
                       or session_cookie(request))
    return await current_principal(request) if has_credentials else None


@router.post("/invitations/{invitation_id}/accept", response_model=schemas.Accepted,
             status_code=201, summary="Accept an invitation")
def accept_invitation(invitation_id: str, request: Request, db: Db,
                      body: schemas.InvitationAccept | None = None,
                      principal: Principal | None = Depends(_optional_principal)):
    """Signed in as the invited email: no body needed. Otherwise send the invitation's
    `token`, and a `password` to create the account (the response then has a personal
    token) or the existing account's password."""
    body = body or schemas.InvitationAccept()
    return service.accept_invitation(db, principal, invitation_id, body.token, body.password,
                                     body.name, request.app.state.settings)


