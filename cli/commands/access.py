"""config (profiles in the config file), whoami, keys, tokens, clusters: Ferry's credential extensions
(/api/v2/ferry/...) and ListResources."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from .. import output
from ..common import State, output_option, pass_state
from ..config import KEYS, ConfigError, ConfigFile, check_profile_name, mask, normalize_endpoint


def _secret_value(value: str | None, what: str) -> str | None:
    """`-` reads the secret from stdin, so it stays out of shell history and `ps`."""
    if value == "-":
        value = sys.stdin.readline().strip()
        if not value:
            raise click.BadParameter("nothing on stdin", param_hint=what)
    return value


def _profile_name(state: State, given: str | None, file: ConfigFile) -> str:
    return check_profile_name(given or state.profile or file.current_profile or "default")


@click.group(invoke_without_command=True)
@click.pass_context
def config(ctx):
    """Store endpoints and credentials in profiles.

    With no subcommand it shows the settings in force.

    \b
      ferry config set --endpoint http://127.0.0.1:8000 --token -    (reads the token from stdin)
      ferry config set --profile prod -e https://ferry.example.com -i FAK... -k -
      ferry config use prod
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(show)


@config.command(name="set")
@click.option("--profile", "profile", metavar="NAME", help="Profile to write (default: the current one).")
@click.option("-e", "--endpoint", metavar="URL", help="Ferry's API, e.g. http://127.0.0.1:8000.")
@click.option("-t", "--token", metavar="TOKEN", help="Bearer token (ferry tokens create); - reads stdin.")
@click.option("-i", "--access-key-id", metavar="ID", help="AccessKey id (ferry keys create).")
@click.option("-k", "--access-key-secret", metavar="SECRET", help="AccessKey secret; - reads stdin.")
@click.option("--cluster", metavar="CLUSTER", help="Default cluster for service names.")
@click.option("--gateway", metavar="URL", help="Gateway base URL for predict, when not the API's answer.")
@click.option("--unset", "unset", multiple=True, type=click.Choice(KEYS), help="Remove a setting; repeatable.")
@click.option("--use", is_flag=True, help="Also make this the current profile.")
@pass_state
def set_(state: State, profile, endpoint, token, access_key_id, access_key_secret, cluster, gateway, unset, use):
    """Create or change a profile; the file is written with mode 600."""
    file = ConfigFile.load()
    name = _profile_name(state, profile, file)
    values = dict(file.profiles.get(name, {}))
    token = _secret_value(token, "--token")
    access_key_secret = _secret_value(access_key_secret, "--access-key-secret")
    if token and (access_key_id or access_key_secret):
        raise click.UsageError("Give a token or an AccessKey pair, not both.")
    if token:
        values.pop("access_key_id", None)
        values.pop("access_key_secret", None)
    if access_key_id or access_key_secret:
        values.pop("token", None)
    given = {"endpoint": normalize_endpoint(endpoint) if endpoint else None, "token": token,
             "access_key_id": access_key_id, "access_key_secret": access_key_secret, "cluster": cluster,
             "gateway": normalize_endpoint(gateway) if gateway else None}
    values.update({key: value for key, value in given.items() if value})
    for key in unset:
        values.pop(key, None)
    if not any(given.values()) and not unset and not use:
        raise click.UsageError("Nothing to set: give --endpoint, --token, --access-key-id/--access-key-secret, "
                               "--cluster, --gateway, --unset or --use.")
    file.profiles[name] = values
    if use or not file.current_profile:
        file.current_profile = name
    file.save()
    output.say(f"Saved profile {name} in {file.path} (mode 600)" + (", now current." if file.current_profile == name
                                                                    else "."))
    output.fields([(key, mask(key, values[key])) for key in KEYS if values.get(key)])


@config.command()
@output_option("table", "json", "yaml")
@pass_state
def show(state: State, fmt):
    """Show the settings in force and where each comes from; secrets masked."""
    settings = state.settings
    rows = [(key, mask(key, getattr(settings, key)), settings.sources.get(key, "")) for key in KEYS
            if getattr(settings, key)]
    data = {"Profile": settings.profile, "ConfigFile": str(settings.path), "Auth": settings.auth,
            "Settings": {key: {"Value": value, "Source": source} for key, value, source in rows}}

    def human(_):
        output.say(f"Profile {settings.profile} ({settings.path}); authentication: {settings.auth}")
        output.table(["SETTING", "VALUE", "FROM"], rows)
        file = ConfigFile.load()
        if file.path.exists() and file.readable_by_others():
            output.note(f"Warning: {file.path} is readable by others; run chmod 600 {file.path}.", "yellow")

    output.emit(data, fmt, human)


@config.command(name="list")
@output_option("table", "json", "yaml")
def list_profiles(fmt):
    """List the profiles in the config file (* marks the current one)."""
    file = ConfigFile.load()
    data = {"CurrentProfile": file.current_profile,
            "Profiles": [{"Name": name, "Endpoint": values.get("endpoint", ""), "Cluster": values.get("cluster", ""),
                          "Auth": "bearer token" if values.get("token") else
                          "AccessKey" if values.get("access_key_id") else "none"}
                         for name, values in sorted(file.profiles.items())]}

    def human(data):
        if not data["Profiles"]:
            output.note(f"No profiles yet in {file.path}; create one with `ferry config set`.")
            return
        output.table(["PROFILE", "ENDPOINT", "AUTH", "CLUSTER"],
                     [(("* " if p["Name"] == file.current_profile else "  ") + p["Name"], p["Endpoint"], p["Auth"],
                       p["Cluster"]) for p in data["Profiles"]])

    output.emit(data, fmt, human)


@config.command()
@click.argument("profile")
def use(profile):
    """Make PROFILE the current one."""
    file = ConfigFile.load()
    if profile not in file.profiles:
        raise ConfigError(f"No profile {profile!r} in {file.path}.")
    file.current_profile = profile
    file.save()
    output.say(f"Now using profile {profile}.")


@config.command(name="delete")
@click.argument("profile")
def delete_profile(profile):
    """Remove PROFILE from the config file."""
    file = ConfigFile.load()
    if file.profiles.pop(profile, None) is None:
        raise ConfigError(f"No profile {profile!r} in {file.path}.")
    if file.current_profile == profile:
        file.current_profile = next(iter(sorted(file.profiles)), None)
    file.save()
    output.say(f"Deleted profile {profile}.")


@config.command()
def path():
    """Print where the config file is."""
    output.say(str(ConfigFile.load().path))


@click.command()
@output_option("table", "json", "yaml")
@pass_state
def whoami(state: State, fmt):
    """Show who you are on the server, and your projects."""
    body = state.client.get("/ferry/whoami")
    output.emit(body, fmt, lambda b: (
        output.say(f"{b.get('UserName')} at {state.settings.endpoint} (profile {state.settings.profile}, "
                   f"{state.settings.auth})"),
        output.table(["PROJECT", "ROLE"], [(p.get("Name"), p.get("Role")) for p in b.get("Projects") or []]),
    ))


@click.command()
@output_option()
@pass_state
def clusters(state: State, fmt):
    """List clusters (EAS resource groups)."""
    body = state.client.get("/resources", PageSize=1000)

    def human(b):
        columns = ["CLUSTER", "KIND", "STATUS", "SERVICES", "CPUS", "DEFAULT"] + (["CREATED"] if fmt == "wide" else [])
        rows = []
        for r in b.get("Resources") or []:
            extra = r.get("ExtraData") or {}
            row = [r.get("ClusterId"), extra.get("Kind") or r.get("Vendor"), r.get("Status"), extra.get("ServiceCount"),
                   r.get("CpuCount"), bool(extra.get("Default"))]
            rows.append(row + ([r.get("CreateTime")] if fmt == "wide" else []))
        output.table(columns, rows)

    output.emit(body, fmt, human)


@dataclass(frozen=True)
class CredentialKind:
    """What `ferry keys` and `ferry tokens` differ in; the list / create / revoke plumbing below serves both."""

    name: str  # the command group
    path: str  # the API's collection, below /api/v2
    listing: str  # the list's key in the API's answer
    columns: tuple[tuple[str, str], ...]  # (table header, answer field)
    id_field: str
    id_metavar: str
    id_type: type
    secret_field: str  # in the answer to the POST, this once
    saved_as: dict[str, str]  # answer field -> profile setting, for --save-profile
    shown_once: str  # the note printed under a secret


ACCESS_KEYS = CredentialKind(
    name="keys", path="/ferry/accesskeys", listing="AccessKeys",
    columns=(("ACCESS KEY ID", "AccessKeyId"), ("DESCRIPTION", "Description"), ("STATUS", "Status"),
             ("CREATED", "CreateTime"), ("LAST USED", "LastUsedTime")),
    id_field="AccessKeyId", id_metavar="ACCESS_KEY_ID", id_type=str, secret_field="AccessKeySecret",
    saved_as={"AccessKeyId": "access_key_id", "AccessKeySecret": "access_key_secret"},
    shown_once="The secret is shown only this once: store it now.",
)
API_TOKENS = CredentialKind(
    name="tokens", path="/ferry/tokens", listing="Tokens",
    columns=(("ID", "Id"), ("NAME", "Name"), ("PREFIX", "Prefix"), ("STATUS", "Status"), ("CREATED", "CreateTime"),
             ("LAST USED", "LastUsedTime")),
    id_field="Id", id_metavar="TOKEN_ID", id_type=int, secret_field="Token", saved_as={"Token": "token"},
    shown_once="The token is shown only this once: store it now.",
)


def credential_group(kind: CredentialKind, *, group_help: str, list_help: str, revoke_help: str) -> click.Group:
    """`ferry <kind>` (which lists), `ferry <kind> list` and `ferry <kind> revoke ID`; `create` is added by the
    caller, its options being the kind's own."""

    @click.group(name=kind.name, invoke_without_command=True, help=group_help)
    @output_option("table", "json", "yaml")
    @click.pass_context
    def group(ctx, fmt):
        if ctx.invoked_subcommand is None:
            ctx.invoke(list_command, fmt=fmt)

    @group.command(name="list", help=list_help)
    @output_option("table", "json", "yaml")
    @pass_state
    def list_command(state: State, fmt):
        body = state.client.get(kind.path)
        output.emit(body, fmt, lambda b: output.table(
            [header for header, _ in kind.columns],
            [tuple(item.get(field) for _, field in kind.columns) for item in b.get(kind.listing) or []]))

    @group.command(name="revoke", help=revoke_help)
    @click.argument("credential_id", metavar=kind.id_metavar, type=kind.id_type)
    @output_option("table", "json", "yaml")
    @pass_state
    def revoke(state: State, credential_id, fmt):
        body = state.client.delete(f"{kind.path}/{credential_id}").body
        output.emit(body, fmt, lambda b: output.say(b.get("Message", "Revoked.")))

    return group


def credential_create(state: State, kind: CredentialKind, request: dict, save_profile: str | None, fmt: str) -> None:
    """Creates one; the secret is printed this once, or saved in a profile (mode 600) and printed masked."""
    body = state.client.post(kind.path, request).body
    if save_profile:
        _save_credential(state, save_profile, {setting: body[field] for field, setting in kind.saved_as.items()})
        body = {**body, kind.secret_field: mask(kind.saved_as[kind.secret_field], body[kind.secret_field])}
    output.emit(body, fmt, lambda b: output.fields([
        (kind.id_field, b.get(kind.id_field)), (kind.secret_field, b.get(kind.secret_field)),
        ("", kind.shown_once if not save_profile else "")]))


def _save_credential(state: State, profile: str, values: dict) -> None:
    file = ConfigFile.load()
    check_profile_name(profile)
    file.profiles[profile] = {"endpoint": state.settings.endpoint, **values}
    file.current_profile = file.current_profile or profile
    file.save()
    output.note(f"Saved to profile {profile} in {file.path} (mode 600); use it with --profile {profile}.")


keys = credential_group(
    ACCESS_KEYS, group_help="Manage your AccessKey pairs.\n\nFor requests signed as the EAS SDK signs them. With no "
                      "subcommand: list.",
    list_help="List your AccessKeys (never their secrets).", revoke_help="Revoke one of your AccessKeys.")


@keys.command(name="create")
@click.option("--description", default="", help="What the key is for.")
@click.option("--save-profile", metavar="PROFILE",
              help="Store the pair in this profile instead of printing the secret.")
@output_option("table", "json", "yaml")
@pass_state
def keys_create(state: State, description, save_profile, fmt):
    """Create an AccessKey pair. The secret is shown only this once (or saved with --save-profile)."""
    credential_create(state, ACCESS_KEYS, {"Description": description}, save_profile, fmt)


tokens = credential_group(
    API_TOKENS, group_help="Manage your API (bearer) tokens.\n\nWith no subcommand: list.",
    list_help="List your API tokens (only their prefixes).", revoke_help="Revoke one of your API tokens.")


@tokens.command(name="create")
@click.argument("name")
@click.option("--save-profile", metavar="PROFILE", help="Store the token in this profile instead of printing it.")
@output_option("table", "json", "yaml")
@pass_state
def tokens_create(state: State, name, save_profile, fmt):
    """Create an API token NAME. The token is shown only this once (or saved with --save-profile)."""
    credential_create(state, API_TOKENS, {"Name": name}, save_profile, fmt)
