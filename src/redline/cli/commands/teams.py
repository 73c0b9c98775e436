"""`teams`, `members`, `invitations`."""

from __future__ import annotations

import click

from redline.cli.context import (
    Env,
    common_options,
    idempotency_option,
    pagination_options,
    yes_option,
)

TEAM_COLUMNS = ["id", "name", "createdAt"]
MEMBER_COLUMNS = ["id", "email", "name", "role", "joinedAt"]
INVITATION_COLUMNS = ["id", "email", "role", "status", "expiresAt"]
ROLES = click.Choice(["owner", "admin", "member", "viewer"])
INVITABLE = click.Choice(["admin", "member", "viewer"])
team_option = click.option("--team", "-t", metavar="TEAM_ID",
                           help="The team (default: REDLINE_TEAM, the profile's, or your only "
                           "team).")


@click.group()
def teams():
    """List, create, rename and delete teams."""


@teams.command("list")
@common_options()
@pagination_options
def teams_list(env: Env, limit, cursor):
    """Teams you belong to."""
    env.emit(env.client(printing=True).teams.list(limit=limit, cursor=cursor), columns=TEAM_COLUMNS)


@teams.command("create")
@common_options()
@idempotency_option
@click.argument("name")
def teams_create(env: Env, name, idempotency_key):
    """Create a team; you become its owner."""
    env.emit(env.client(printing=True).teams.create(name, idempotency_key=idempotency_key))


@teams.command("get")
@common_options()
@click.argument("team_id")
def teams_get(env: Env, team_id):
    """Show a team."""
    env.emit(env.client(printing=True).teams.get(team_id))


@teams.command("rename")
@common_options()
@click.argument("team_id")
@click.argument("name")
def teams_rename(env: Env, team_id, name):
    """Rename a team (admins and owners)."""
    env.emit(env.client(printing=True).teams.rename(team_id, name))


@teams.command("delete")
@common_options()
@yes_option
@click.argument("team_id")
def teams_delete(env: Env, team_id, yes):
    """Delete a team with all its projects and their data (owners)."""
    env.confirm(yes, f"delete team {team_id} with all its projects and data")
    env.emit(env.client(printing=True).teams.delete(team_id))


@click.group()
def members():
    """List, invite and remove team members, and change their roles."""


@members.command("list")
@common_options()
@team_option
@pagination_options
def members_list(env: Env, team, limit, cursor):
    """A team's members and their roles."""
    client = env.client()
    env.emit(client.members.list(env.team(client, team), limit=limit, cursor=cursor),
             columns=MEMBER_COLUMNS)


@members.command("invite")
@common_options()
@team_option
@click.argument("email")
@click.option("--role", type=INVITABLE, default="member", show_default=True)
def members_invite(env: Env, team, email, role):
    """Invite someone by email (the invitation lasts 7 days).

    The result carries the accept link and token, shown once: send them to the invitee.
    """
    client = env.client()
    env.emit(client.members.invite(env.team(client, team), email, role))


@members.command("set-role")
@common_options()
@click.argument("member_id")
@click.argument("role", type=ROLES)
def members_set_role(env: Env, member_id, role):
    """Change a member's role (owners; `owner` transfers ownership)."""
    env.emit(env.client(printing=True).members.set_role(member_id, role))


@members.command("remove")
@common_options()
@yes_option
@click.argument("member_id")
def members_remove(env: Env, member_id, yes):
    """Remove a member from the team (or leave it, with your own member id)."""
    env.confirm(yes, f"remove member {member_id} from the team")
    env.emit(env.client(printing=True).members.remove(member_id))


@click.group()
def invitations():
    """List, revoke and accept invitations."""


@invitations.command("list")
@common_options()
@team_option
@pagination_options
def invitations_list(env: Env, team, limit, cursor):
    """A team's invitations."""
    client = env.client()
    env.emit(client.invitations.list(env.team(client, team), limit=limit, cursor=cursor),
             columns=INVITATION_COLUMNS)


@invitations.command("revoke")
@common_options()
@yes_option
@click.argument("invitation_id")
def invitations_revoke(env: Env, invitation_id, yes):
    """Revoke a pending invitation."""
    env.confirm(yes, f"revoke invitation {invitation_id}")
    env.emit(env.client(printing=True).invitations.revoke(invitation_id))


@invitations.command("accept")
@common_options()
@click.argument("invitation_id")
@click.option("--token", metavar="TOKEN", help="The invitation's secret (from the link).")
@click.option("--password", metavar="PASSWORD", envvar="REDLINE_PASSWORD",
              help="Creates your account when the email has none (or signs in to it).")
@click.option("--name", metavar="NAME", help="Your display name, for a new account.")
def invitations_accept(env: Env, invitation_id, token, password, name):
    """Accept an invitation (signed in as the invited email, or with its token).

    With --password, you are signed in too: the personal token is saved in the profile
    (`default`, or --profile), as `redline login` does, with the team as its default.
    """
    from redline.sdk.settings import DEFAULT_PROFILE, ClientSettings, Profile

    client = env.client()
    accepted = client.invitations.accept(invitation_id, token=token, password=password,
                                         name=name)
    if accepted.token:
        store = env.store
        profile_name = env.profile_name or ClientSettings.from_env().profile or DEFAULT_PROFILE
        previous = store.profiles.get(profile_name) or Profile()
        store.profiles[profile_name] = Profile(
            url=env.url, token=accepted.token, email=accepted.member.email,
            team=accepted.member.team_id,
            project=previous.project if previous.team == accepted.member.team_id else None)
        store.current = profile_name
        path = store.save()
        env.note(f"Signed in to {env.url} as {accepted.member.email} (profile "
                 f"'{profile_name}', saved in {path}).")
    env.emit(accepted)
