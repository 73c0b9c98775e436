"""`init`, `login`, `logout`, `whoami`."""

from __future__ import annotations

import sys

import click

from redline.cli.context import Env, common_options
from redline.cli.failures import UsageError
from redline.sdk.settings import DEFAULT_PROFILE, ClientSettings, Profile


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _need(value: str | None, flag: str, prompt: str, *, hide: bool = False,
          default: str | None = None, confirm: bool = False) -> str:
    """A flag's value, prompted for on a terminal, else a usage error (exit 5)."""
    if value:
        return value
    if _interactive():
        return click.prompt(prompt, hide_input=hide, default=default,
                            confirmation_prompt=confirm, err=True)
    if default is not None:
        return default
    raise UsageError(f"Missing option '{flag}' (there is no terminal to ask on)",
                     details={"field": flag, "reason": "required"})


@click.command()
@common_options()
@click.option("--email", metavar="EMAIL", help="The owner's email (sign-in name).")
@click.option("--password", metavar="PASSWORD", envvar="REDLINE_PASSWORD",
              help="The owner's password, at least 8 characters (or REDLINE_PASSWORD).")
@click.option("--name", metavar="NAME", help="The owner's display name.")
@click.option("--team", metavar="NAME", help="Name of the first team.")
@click.option("--project", metavar="NAME", help="Name of the first project.")
@click.option("--key-name", metavar="NAME", default="CI", show_default=True,
              help="Name of the first API key.")
def init(env: Env, email, password, name, team, project, key_name):
    """Set up a new server: its owner, a team, a project and a CI API key.

    The key is printed once: store it as REDLINE_API_KEY in your CI secrets. The owner is
    also signed in (saved in the profile). On a server that is set up already this fails with
    CONFLICT (exit 6): use `redline login`.
    """
    email = _need(email, "--email", "Owner email")
    password = _need(password, "--password", "Password", hide=True, confirm=True)
    team = _need(team, "--team", "Team name", default="My team")
    project = _need(project, "--project", "Project name", default="My project")
    from redline.sdk.exceptions import ConflictError

    client = env.client(anonymous=True)
    try:
        result = client.setup(email, password, team=team, project=project, key_name=key_name,
                              name=name)
    except ConflictError as exc:
        if exc.details.get("reason") == "already_set_up":
            # Not a transient conflict: waiting and retrying cannot help.
            exc._retryable = False
            exc._next_action = ("The server has an owner already: sign in with `redline "
                                "login --email EMAIL`, or ask an owner for an invitation.")
        raise
    profile_note = _save_owner_profile(env, client, email, password, result)
    if env.output == "json":
        env.emit(result)
        return 0
    click.echo(f"Redline at {env.url} is set up.")
    click.echo(f"  owner:   {result.user.email} ({result.user.id})")
    click.echo(f"  team:    {result.team.name} ({result.team.id})")
    click.echo(f"  project: {result.project.name} ({result.project.id})")
    click.echo(f"  API key: {result.api_key.key}")
    click.echo("The key is shown only now: keep it as REDLINE_API_KEY in your CI secrets.")
    if profile_note:
        click.echo(profile_note)
    return 0


def _save_owner_profile(env: Env, client, email: str, password: str, result) -> str | None:
    from redline.sdk.exceptions import RedlineError

    try:
        login = client.auth.login(email, password)
    except RedlineError:
        return None  # set up all the same; `redline login` can sign in later
    store = env.store
    name = env.active_profile_name
    store.profiles[name] = Profile(url=env.url, token=login.token, email=email,
                                   expires_at=login.expires_at, project=result.project.id,
                                   team=result.team.id)
    store.current = name
    store.save()
    return f"Signed in as {email} (profile '{name}')."


@click.command()
@common_options()
@click.option("--email", metavar="EMAIL", help="Your email.")
@click.option("--password", metavar="PASSWORD", envvar="REDLINE_PASSWORD",
              help="Your password (or REDLINE_PASSWORD, or --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--api-key", metavar="KEY", help="Save a project API key instead of signing in.")
@click.option("--default-project", metavar="PROJECT_ID",
              help="Project used when a command's --project is left out.")
@click.option("--default-team", metavar="TEAM_ID",
              help="Team used when a command's --team is left out.")
def login(env: Env, email, password, password_stdin, api_key, default_project, default_team):
    """Sign in and save the personal token in a profile (file mode 0600).

    The profile is `default` unless --profile names another; it becomes the current one.
    """
    from redline.sdk import Client

    store = env.store
    name = env.profile_name or ClientSettings.from_env().profile or DEFAULT_PROFILE
    previous = store.profiles.get(name) or Profile()
    if api_key:
        me = Client(env.url, api_key=api_key, from_env=False).me()
        profile = Profile(url=env.url, api_key=api_key, email=me.email,
                          project=default_project or me.project_id,
                          team=default_team or (me.teams[0].team_id if me.teams else None))
        expires_at = None
    else:
        email = _need(email, "--email", "Email")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        password = _need(password, "--password", "Password", hide=True)
        result = env.client(anonymous=True).auth.login(email, password)
        profile = Profile(url=env.url, token=result.token, email=result.user.email,
                          expires_at=result.expires_at,
                          project=default_project or previous.project,
                          team=default_team or previous.team)
        expires_at = result.expires_at
    store.profiles[name] = profile
    store.current = name
    path = store.save()
    summary = {"profile": name, "url": env.url, "email": profile.email,
               "kind": "key" if api_key else "user", "expiresAt": expires_at,
               "project": profile.project, "team": profile.team, "configFile": str(path)}
    if env.output == "json":
        env.emit(summary)
    else:
        click.echo(f"Signed in to {env.url} as {profile.email} (profile '{name}', saved in "
                   f"{path}).")
    return 0


@click.command()
@common_options()
def logout(env: Env):
    """Revoke the saved personal token and forget it."""
    from redline.sdk.exceptions import AuthInvalidError, AuthRequiredError

    store = env.store
    name = env.active_profile_name
    profile = store.profiles.get(name)
    if profile is None or not (profile.token or profile.api_key):
        raise UsageError(f"Not signed in (profile '{name}')",
                         details={"field": "--profile", "reason": "not_signed_in"},
                         next_action="Nothing to do; `redline login` signs in.")
    revoked = False
    if profile.token:
        from redline.sdk import Client

        client = Client(profile.url or env.url, token=profile.token, from_env=False)
        try:
            client.auth.logout()
            revoked = True
        except (AuthInvalidError, AuthRequiredError):
            pass  # expired or revoked already: forgetting it is all that is left
    del store.profiles[name]
    store.save()
    if env.output == "json":
        env.emit({"profile": name, "revoked": revoked})
    else:
        click.echo(f"Signed out (profile '{name}').")
    return 0


@click.command()
@common_options()
def whoami(env: Env):
    """Show the user (or API key) behind the credentials, its scopes and teams."""
    me = env.client().me()
    if env.output == "json":
        env.emit({**me.to_json(), "url": env.url, "profile": env.active_profile_name})
        return 0
    click.echo(f"{me.email} ({me.id}) on {env.url}")
    if me.kind == "key":
        click.echo(f"  API key {me.key_id} of project {me.project_id}")
    click.echo("  scopes: " + (", ".join(me.scopes) or "-"))
    for team in me.teams:
        click.echo(f"  team {team.team_id} ({team.team_name}): {team.role}")
    return 0


@click.command()
@common_options()
def health(env: Env):
    """Check that the server and its database answer (exit 0), else why not."""
    result = env.client(anonymous=True).health()
    if env.output == "json":
        env.emit({**result, "url": env.url})
    else:
        click.echo(f"{env.url}: {result.get('status', 'ok')}")
    return 0
