"""Where the CLI talks to and as whom: profiles in a private TOML file, overridden by the environment and flags.

The file is `$FERRY_CONFIG`, else `$XDG_CONFIG_HOME/ferry/config.toml`, else `~/.config/ferry/config.toml`,
written with mode 600 (its folder 700) because it holds credentials:

    current_profile = "default"

    [profiles.default]
    endpoint = "http://127.0.0.1:8000"
    token = "ferry_..."

    [profiles.prod]
    endpoint = "https://ferry.example.com"
    access_key_id = "FAK..."
    access_key_secret = "..."

Precedence, highest first: command-line flags, environment variables (FERRY_ENDPOINT, FERRY_TOKEN,
FERRY_ACCESS_KEY_ID / FERRY_ACCESS_KEY_SECRET, FERRY_CLUSTER, FERRY_GATEWAY), the profile. Credentials override
as a unit: a token in the environment replaces the profile's AccessKey pair and the other way round.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

KEYS = ("endpoint", "token", "access_key_id", "access_key_secret", "cluster", "gateway")
CREDENTIAL_KEYS = ("token", "access_key_id", "access_key_secret")
SECRET_KEYS = ("token", "access_key_secret")
ENVIRONMENT = {
    "endpoint": "FERRY_ENDPOINT",
    "token": "FERRY_TOKEN",
    "access_key_id": "FERRY_ACCESS_KEY_ID",
    "access_key_secret": "FERRY_ACCESS_KEY_SECRET",
    "cluster": "FERRY_CLUSTER",
    "gateway": "FERRY_GATEWAY",
}
DEFAULT_PROFILE = "default"
DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ConfigError(Exception):
    """The configuration cannot be read or is incomplete; the message says what to do."""


def config_path() -> Path:
    if os.environ.get("FERRY_CONFIG"):
        return Path(os.environ["FERRY_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "ferry" / "config.toml"


@dataclass
class ConfigFile:
    path: Path
    current_profile: str | None = None
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> ConfigFile:
        path = path or config_path()
        if not path.exists():
            return cls(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"Cannot read {path}: {exc}") from exc
        profiles = {}
        for name, values in (data.get("profiles") or {}).items():
            if isinstance(values, dict):
                profiles[name] = {key: str(value) for key, value in values.items() if key in KEYS and value != ""}
        current = data.get("current_profile")
        return cls(path, current if isinstance(current, str) else None, profiles)

    def save(self) -> None:
        """Writes the whole file atomically, private from the first byte (never briefly world-readable)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = ["# Ferry CLI configuration, written by `ferry config`. It holds credentials: keep it private.", ""]
        if self.current_profile:
            lines += [f"current_profile = {_toml_string(self.current_profile)}", ""]
        for name in sorted(self.profiles):
            lines.append(f"[profiles.{name}]")
            values = self.profiles[name]
            lines += [f"{key} = {_toml_string(values[key])}" for key in KEYS if values.get(key)]
            lines.append("")
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write("\n".join(lines))
            os.chmod(temporary, 0o600)  # in case the file existed with a looser mode
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def readable_by_others(self) -> bool:
        try:
            return bool(self.path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
        except OSError:
            return False


def _toml_string(value: str) -> str:
    # A JSON string with only ASCII is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(value, ensure_ascii=True)


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.fullmatch(name):
        raise ConfigError(f"Profile names are 1 to 64 letters, digits, '-' or '_'; {name!r} is not one.")
    return name


def normalize_endpoint(url: str) -> str:
    """`127.0.0.1:8000`, `http://host:8000/` and `http://host:8000/api/v2` all mean `http://host:8000`."""
    url = url.strip().rstrip("/")
    if url and "://" not in url:
        url = "http://" + url
    return url.removesuffix("/api/v2").rstrip("/")


@dataclass
class Settings:
    """What one command runs with, and where each value came from (flag, environment, profile, default)."""

    profile: str
    endpoint: str = DEFAULT_ENDPOINT
    token: str = ""
    access_key_id: str = ""
    access_key_secret: str = ""
    cluster: str = ""
    gateway: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def auth(self) -> str:
        if self.token:
            return "bearer token"
        if self.access_key_id:
            return "AccessKey"
        return "none"

    def require_credentials(self) -> None:
        if self.access_key_id and not self.access_key_secret:
            raise ConfigError(f"AccessKey {self.access_key_id} has no secret: set FERRY_ACCESS_KEY_SECRET or run "
                              f"`ferry config set --profile {self.profile} --access-key-secret ...`.")
        if not self.token and not self.access_key_id:
            raise ConfigError(
                f"No credentials for profile {self.profile!r}. Run `ferry config set --token TOKEN` (or "
                "--access-key-id/--access-key-secret), or set FERRY_TOKEN."
            )


def resolve(profile: str | None = None, flags: dict[str, str | None] | None = None,
            file: ConfigFile | None = None) -> Settings:
    """The settings in force: flags over environment over the chosen profile."""
    file = file or ConfigFile.load()
    name = profile or os.environ.get("FERRY_PROFILE") or file.current_profile or DEFAULT_PROFILE
    explicit = bool(profile or os.environ.get("FERRY_PROFILE"))
    if explicit and name not in file.profiles and name != DEFAULT_PROFILE:
        known = ", ".join(sorted(file.profiles)) or "none yet"
        raise ConfigError(f"No profile {name!r} in {file.path} (profiles: {known}); create it with "
                          f"`ferry config set --profile {name} --endpoint URL ...`.")
    stored = file.profiles.get(name, {})
    environment = {key: os.environ[variable] for key, variable in ENVIRONMENT.items() if os.environ.get(variable)}
    given = {key: value for key, value in (flags or {}).items() if value}
    settings = Settings(profile=name, path=file.path)
    layers = [(f"profile {name}", stored), ("environment", environment), ("flag", given)]
    for source, values in layers:
        if any(values.get(key) for key in CREDENTIAL_KEYS):
            for key in CREDENTIAL_KEYS:  # credentials replace each other as a unit
                setattr(settings, key, values.get(key, ""))
                settings.sources[key] = source
        for key in ("endpoint", "cluster", "gateway"):
            if values.get(key):
                setattr(settings, key, values[key])
                settings.sources[key] = source
    settings.endpoint = normalize_endpoint(settings.endpoint)
    settings.gateway = normalize_endpoint(settings.gateway) if settings.gateway else ""
    settings.sources.setdefault("endpoint", "default")
    return settings


def mask(key: str, value: str) -> str:
    """Secrets are never shown: a token keeps its 8-character prefix (what the server lists), a secret nothing."""
    if not value:
        return ""
    if key == "token":
        return value[:8] + "…" if len(value) > 16 else "****"
    if key in SECRET_KEYS:
        return "****"
    return value
