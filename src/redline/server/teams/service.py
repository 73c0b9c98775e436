"""Teams, their members and invitations (DESIGN.md section 5).

Who may do what: any member reads the team; admins invite (never as owner) and remove members
and viewers; owners change anyone's role (making someone else owner is how ownership is
transferred), remove anyone and delete the team. A team always keeps at least one owner.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection

from redline.server.accounts import service as accounts
from redline.server.auth import (
    ROLES,
    Principal,
    forbidden,
    require_team_role,
    require_user,
    team_role,
)
from redline.server.http_errors import ApiError, not_found
from redline.server.kit import tokens
from redline.server.kit.clock import iso, utcnow
from redline.server.kit.ids import new_id
from redline.server.runs import service as runs
from redline.server.teams import repository as repo

INVITATION_TTL = timedelta(days=7)


def team_json(row) -> dict:
    return {"id": row.id, "name": row.name, "createdAt": iso(row.created_at)}


def member_json(row) -> dict:
    return {"id": row.id, "userId": row.user_id, "teamId": row.team_id, "role": row.role,
            "name": row.name, "email": row.email, "avatarUrl": None,
            "joinedAt": iso(row.joined_at)}


def invitation_json(row, now=None) -> dict:
    now = now or utcnow()
    status = row.status
    if status == "pending" and row.expires_at <= now:
        status = "expired"
    return {"id": row.id, "teamId": row.team_id, "email": row.email, "role": row.role,
            "status": status, "expiresAt": iso(row.expires_at), "createdAt": iso(row.created_at)}


def create_team(conn: Connection, principal: Principal, name: str) -> dict:
    require_user(principal)
    now = utcnow()
    team_id = new_id("team")
    repo.insert_team(conn, id=team_id, name=name, created_at=now, updated_at=now)
    repo.insert_member(conn, id=new_id("member"), team_id=team_id, user_id=principal.user_id,
                       role="owner", joined_at=now)
    return team_json(repo.get_team(conn, team_id))


def list_teams(conn: Connection, principal: Principal, page) -> dict:
    only = principal.team_id if principal.kind == "key" else None
    rows, total = repo.teams_of_user(conn, principal.user_id, only, page.limit, page.offset)
    return page.page([team_json(r) for r in rows], total)


def get_team(conn: Connection, principal: Principal, team_id: str) -> dict:
    team_role(conn, principal, team_id)
    return team_json(repo.get_team(conn, team_id))


def rename_team(conn: Connection, principal: Principal, team_id: str, name: str) -> dict:
    require_team_role(conn, principal, team_id, "admin")
    require_user(principal)
    repo.update_team(conn, team_id, name=name, updated_at=utcnow())
    return team_json(repo.get_team(conn, team_id))


def delete_team(conn: Connection, principal: Principal, team_id: str) -> None:
    require_team_role(conn, principal, team_id, "owner")
    require_user(principal)
    runs.queue_team_blob_deletions(conn, team_id)
    repo.delete_team(conn, team_id)


def list_members(conn: Connection, principal: Principal, team_id: str, page) -> dict:
    team_role(conn, principal, team_id)
    require_user(principal)
    rows, total = repo.list_members(conn, team_id, page.limit, page.offset)
    return page.page([member_json(r) for r in rows], total)


def invite(conn: Connection, principal: Principal, team_id: str, email: str, role: str,
           public_url: str) -> dict:
    require_team_role(conn, principal, team_id, "admin")
    require_user(principal)
    email = accounts.normalise_email(email)
    existing = accounts.find_user_by_email(conn, email)
    if existing is not None and repo.member_of(conn, team_id, existing.id) is not None:
        raise ApiError("CONFLICT", f"'{email}' is already a member of this team",
                       {"field": "email", "reason": "already_member"})
    now = utcnow()
    secret = tokens.make_token(tokens.INVITATION_PREFIX)
    invitation_id = new_id("invite")
    repo.insert_invitation(conn, id=invitation_id, team_id=team_id, email=email, role=role,
                           status="pending", secret_hash=secret.secret_hash,
                           invited_by=principal.user_id, expires_at=now + INVITATION_TTL,
                           created_at=now)
    result = invitation_json(repo.get_invitation(conn, invitation_id), now)
    result["acceptToken"] = secret.token
    result["acceptUrl"] = f"{public_url.rstrip('/')}/invitations/{invitation_id}?token={secret.token}"
    return result


def list_invitations(conn: Connection, principal: Principal, team_id: str, page) -> dict:
    require_team_role(conn, principal, team_id, "admin")
    require_user(principal)
    rows, total = repo.list_invitations(conn, team_id, page.limit, page.offset)
    now = utcnow()
    return page.page([invitation_json(r, now) for r in rows], total)


def revoke_invitation(conn: Connection, principal: Principal, invitation_id: str) -> None:
    row = repo.get_invitation(conn, invitation_id)
    if row is None:
        raise not_found("Invitation", invitation_id)
    try:
        require_team_role(conn, principal, row.team_id, "admin")
    except ApiError as exc:
        if exc.code == "NOT_FOUND":
            raise not_found("Invitation", invitation_id) from None
        raise
    require_user(principal)
    if row.status == "pending":
        repo.update_invitation(conn, invitation_id, status="revoked")


def accept_invitation(conn: Connection, principal: Principal | None, invitation_id: str,
                      token: str | None, password: str | None, name: str | None,
                      settings) -> dict:
    """Join a team. Signed in as the invited email, nothing else is needed; otherwise the
    invitation's secret proves the link was received, and a password creates the account."""
    row = repo.get_invitation(conn, invitation_id)
    now = utcnow()
    secret_ok = token is not None and row is not None and tokens.token_matches(token,
                                                                              row.secret_hash)
    if principal is not None and principal.kind == "user" and row is not None:
        user = accounts.get_user(conn, principal.user_id)
        if user.email != row.email and not secret_ok:
            raise not_found("Invitation", invitation_id)
    elif not secret_ok:
        raise not_found("Invitation", invitation_id)
    if row.status != "pending":
        raise ApiError("CONFLICT", f"This invitation is {row.status}",
                       {"reason": row.status})
    if row.expires_at <= now:
        raise ApiError("VALIDATION_ERROR", "This invitation expired; ask for a new one",
                       {"field": "invitation", "reason": "expired"})
    new_token = None
    if principal is not None and principal.kind == "user":
        user = accounts.get_user(conn, principal.user_id)
    else:
        user = accounts.find_user_by_email(conn, row.email)
        if user is None:
            if not password:
                raise ApiError("VALIDATION_ERROR", "Choose a password to create your account",
                               {"field": "password", "reason": "required"})
            user = accounts.create_user(conn, row.email, password, name)
        elif not (password and accounts.passwords.verify_password(user.password_hash, password)):
            raise ApiError("AUTH_REQUIRED", "This email has an account: sign in (or send its "
                           "password) to accept", {"reason": "sign_in"})
        new_token = accounts.start_session(conn, user.id, settings)["token"]
    if repo.member_of(conn, row.team_id, user.id) is not None:
        raise ApiError("CONFLICT", "You are already a member of this team",
                       {"reason": "already_member"})
    member_id = new_id("member")
    repo.insert_member(conn, id=member_id, team_id=row.team_id, user_id=user.id, role=row.role,
                       joined_at=now)
    repo.update_invitation(conn, invitation_id, status="accepted", accepted_at=now)
    return {"member": member_json(repo.get_member(conn, member_id)), "token": new_token}


def _member_in_callers_team(conn: Connection, principal: Principal, member_id: str):
    member = repo.get_member(conn, member_id)
    if member is None:
        raise not_found("Member", member_id)
    try:
        role = team_role(conn, principal, member.team_id)
    except ApiError:
        raise not_found("Member", member_id) from None
    return member, role


def change_role(conn: Connection, principal: Principal, member_id: str, new_role: str) -> dict:
    member, my_role = _member_in_callers_team(conn, principal, member_id)
    require_user(principal)
    if my_role != "owner":
        raise forbidden(["role:owner"], [f"role:{my_role}"], "Only an owner changes roles")
    if (member.role == "owner" and new_role != "owner"
            and repo.count_owners(conn, member.team_id) <= 1):
        raise ApiError("CONFLICT", "A team needs at least one owner: make someone else owner "
                       "first", {"reason": "last_owner"})
    repo.update_member(conn, member_id, role=new_role)
    return member_json(repo.get_member(conn, member_id))


def remove_member(conn: Connection, principal: Principal, member_id: str) -> None:
    member, my_role = _member_in_callers_team(conn, principal, member_id)
    require_user(principal)
    leaving = member.user_id == principal.user_id
    if not leaving:
        allowed = my_role == "owner" or (
            my_role == "admin" and ROLES.index(member.role) < ROLES.index("admin"))
        if not allowed:
            raise forbidden(["role:owner"] if member.role in ("admin", "owner")
                            else ["role:admin"], [f"role:{my_role}"],
                            f"Your role ({my_role}) cannot remove a {member.role}")
    if member.role == "owner" and repo.count_owners(conn, member.team_id) <= 1:
        raise ApiError("CONFLICT", "The last owner cannot leave: make someone else owner "
                       "first, or delete the team", {"reason": "last_owner"})
    repo.delete_member(conn, member_id)
