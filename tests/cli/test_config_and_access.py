"""Help, the config file and profiles, AccessKey-signed requests, tokens, whoami, clusters."""

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from cli.main import SECTIONS

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

VERBS = [name for _, names in SECTIONS for name in names]


def test_help_lists_every_verb_by_area_and_each_verb_explains_itself(ferry):
    top = ferry.ok("--help").stdout
    for title, names in SECTIONS:
        assert f"{title}:" in top
        for name in names:
            assert f"\n  {name} " in top, name
    with ThreadPoolExecutor(4) as pool:  # one process per verb: the real executable, but not one at a time
        pages = dict(zip(VERBS, pool.map(lambda verb: ferry.ok(verb, "--help").stdout, VERBS)))
    for verb, page in pages.items():
        assert page.startswith(f"Usage: ferry {verb} "), page
        assert "-h, --help" in page
    assert ferry.ok("--version").stdout.strip() == "ferry, version 0.1.0"
    unknown = ferry("lisst")
    assert unknown.returncode == 2 and "No such command 'lisst'" in unknown.stderr


def test_config_file_is_private_and_never_shows_secrets(ferry, alice_token, live_server):
    env = {"FERRY_ENDPOINT": "", "FERRY_TOKEN": ""}  # only the file speaks
    saved = ferry.ok("config", "set", "--endpoint", live_server.url + "/", "--token", "-", input=alice_token + "\n",
                     **env)
    assert alice_token not in saved.stdout + saved.stderr
    path = Path(ferry.env["XDG_CONFIG_HOME"]) / "ferry" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ferry.ok("config", "path", **env).stdout.strip() == str(path)

    shown = ferry.ok("config", **env).stdout  # `config` alone shows
    assert alice_token not in shown and alice_token[:8] + "…" in shown and "profile default" in shown
    as_json = ferry.json("config", "show", **env)
    assert as_json["Settings"]["endpoint"] == {"Value": live_server.url, "Source": "profile default"}
    assert as_json["Settings"]["token"]["Value"] == alice_token[:8] + "…"
    assert ferry.json("whoami", **env)["UserName"] == "alice"

    # The environment overrides the file, and says so.
    overridden = ferry.json("config", "show", FERRY_ENDPOINT="http://127.0.0.1:9", FERRY_TOKEN="")
    assert overridden["Settings"]["endpoint"] == {"Value": "http://127.0.0.1:9", "Source": "environment"}
    unreachable = ferry("list", FERRY_ENDPOINT="http://127.0.0.1:9", FERRY_TOKEN="")
    assert unreachable.returncode == 1 and "Cannot reach Ferry at http://127.0.0.1:9" in unreachable.stderr

    # A second profile; switching; deleting.
    ferry.ok("config", "set", "--profile", "other", "-e", "http://127.0.0.1:9", "-t", "ferry_not_a_real_token", **env)
    profiles = ferry.json("config", "list", **env)
    assert profiles["CurrentProfile"] == "default"
    assert [p["Name"] for p in profiles["Profiles"]] == ["default", "other"]
    assert "ferry_not_a_real_token" not in path.read_text().replace("ferry_not_a_real_token", "", 1)
    ferry.ok("config", "use", "other", **env)
    assert ferry.json("config", "show", **env)["Profile"] == "other"
    assert ferry.json("--profile", "default", "whoami", **env)["UserName"] == "alice"
    missing = ferry("--profile", "nope", "list", **env)
    assert missing.returncode == 2 and "No profile 'nope'" in missing.stderr
    ferry.ok("config", "delete", "other", **env)
    assert ferry.json("config", "show", **env)["Profile"] == "default"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    nothing = ferry("list", FERRY_ENDPOINT="", FERRY_TOKEN="", XDG_CONFIG_HOME=str(ferry.tmp_path / "empty"))
    assert nothing.returncode == 2 and "No credentials" in nothing.stderr


def test_an_access_key_profile_signs_requests_like_the_sdk(ferry, iris_file):
    created = ferry.json("keys", "create", "--description", "laptop", "--save-profile", "ak")
    key_id = created["AccessKeyId"]
    assert created["AccessKeySecret"] == "****"
    path = Path(ferry.env["XDG_CONFIG_HOME"]) / "ferry" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and key_id in path.read_text()

    signed = {"FERRY_TOKEN": ""}  # the profile's AccessKey pair, and nothing else
    show = ferry.json("--profile", "ak", "config", "show", **signed)
    assert show["Auth"] == "AccessKey" and show["Settings"]["access_key_secret"]["Value"] == "****"
    assert ferry.json("--profile", "ak", "whoami", **signed)["UserName"] == "alice"
    # A signed body (POST) and a signed query string (GET with filters).
    created = ferry.json("--profile", "ak", "create", ferry.file("iris.json", iris_file), "--no-wait", **signed)
    assert created["ServiceName"] == "demo_iris"
    listed = ferry.json("--profile", "ak", "list", "--filter", "iris", "--status", "Creating", **signed)
    assert [s["ServiceName"] for s in listed["Services"]] == ["demo_iris"]
    keys = ferry.json("--profile", "ak", "keys", **signed)["AccessKeys"]
    assert [(k["AccessKeyId"], k["Status"]) for k in keys] == [(key_id, "Active")]

    assert "Revoked" in ferry.ok("keys", "revoke", key_id).stdout
    refused = ferry("--profile", "ak", "list", **signed)
    assert refused.returncode == 1
    assert "[Unauthorized]" in refused.stderr and f"AccessKey {key_id} has been revoked" in refused.stderr


def test_tokens_whoami_and_clusters(ferry):
    token = ferry.json("tokens", "create", "ci")
    assert token["Token"].startswith("ferry_")
    assert ferry.json("whoami", FERRY_TOKEN=token["Token"])["Projects"] == [{"Name": "team_a", "Role": "developer"}]
    listed = ferry.json("tokens")["Tokens"]
    assert {t["Name"] for t in listed} == {"cli", "ci"} and all("Token" not in t for t in listed)
    ferry.ok("tokens", "revoke", str(token["Id"]))
    refused = ferry("whoami", FERRY_TOKEN=token["Token"])
    assert refused.returncode == 1 and "has been revoked" in refused.stderr

    clusters = ferry.json("clusters")["Resources"]
    assert [c["ClusterId"] for c in clusters] == ["local"]
    assert yaml.safe_load(ferry.ok("clusters", "-o", "yaml").stdout)["Resources"][0]["ClusterId"] == "local"
    table = ferry.ok("clusters").stdout
    assert "CLUSTER" in table and "local" in table
    assert "alice" in ferry.ok("whoami").stdout
    assert json.loads(ferry.ok("whoami", "-o", "json").stdout)["UserName"] == "alice"
