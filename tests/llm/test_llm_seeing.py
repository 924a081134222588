"""Seeing a real vLLM service (the group's shared `chat` service): `ferry predict --stream` prints the
engine's tokens as they come, the console's chat relay streams them, the autoscaler loop scales on the
engine's waiting queue as the gateway's scraper reports it, and the monitoring tab shows time to first token,
time per output token and tokens per second from the engine's counters and the gateway's streams."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests

from contracts.scaling_records import decision_read

from .conftest import SERVICE, engine_port, engine_still_running

FERRY = Path(sys.executable).with_name("ferry")


def platform_redis(platform) -> redis.Redis:
    password = (platform.var_dir / "redis-password").read_text().strip()
    return redis.Redis(host="127.0.0.1", port=int(platform.env["FERRY_REDIS_PORT"]), password=password)


def eventually(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} within {timeout:g} s"
        time.sleep(0.5)


def test_ferry_predict_streams_the_engines_tokens_as_they_come(platform, chat, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("FERRY_")}
    env.update(FERRY_ENDPOINT=f"http://127.0.0.1:{platform.web_port}", NO_COLOR="1", PYTHONUNBUFFERED="1",
               FERRY_TOKEN=(platform.var_dir / "admin-token").read_text().strip(), HOME=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    body = json.dumps({"model": SERVICE, "max_tokens": 300, "ignore_eos": True,
                       "messages": [{"role": "user", "content": "Tell a long story."}]})
    process = subprocess.Popen([str(FERRY), "predict", SERVICE, "--path", "v1/chat/completions", "--stream",
                                "--endpoint", platform.gateway, "--timeout", "300", "-d", body],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = os.read(process.stdout.fileno(), 65536)  # whatever the CLI printed first
    running = engine_still_running(engine_port(platform, SERVICE))
    rest = process.stdout.read()
    assert process.wait(120) == 0, process.stderr.read()
    assert first and rest, (first, rest)
    assert running, "the CLI printed its first text only once the engine had finished"
    assert (first + rest).endswith(b"\n") and b"data:" not in first + rest  # the text, not the events


def test_the_consoles_chat_relay_streams_the_engines_answer(platform, chat):
    session = requests.Session()
    console = f"http://127.0.0.1:{platform.web_port}"
    session.get(f"{console}/login/", timeout=30)
    password = (platform.var_dir / "admin-password").read_text().strip()
    logged_in = session.post(f"{console}/login/", timeout=30, headers={"Referer": f"{console}/login/"},
                             data={"username": "admin", "password": password,
                                   "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert logged_in.ok and "Log out" in logged_in.text
    page = session.get(f"{console}/services/local/{SERVICE}/invoke/", timeout=30).text
    assert 'id="chat-form"' in page and chat not in page  # the token stays on the server
    answer = session.post(f"{console}/services/local/{SERVICE}/actions/chat/", stream=True, timeout=300,
                          headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": console},
                          json={"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 40})
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in answer.iter_lines() if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]" and len(events) > 5, events[:3]
    assert any(json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[:-1])


def test_the_autoscaler_reads_the_engines_queue_and_the_monitoring_its_tokens(platform, chat):
    store = platform_redis(platform)
    record = eventually(lambda: (decision_read(store, "local", SERVICE) or {}).get("metrics"), 120,
                        "the autoscaler did not measure llm[waiting]")
    assert record[0]["metricName"] == "llm[waiting]" and record[0]["value"] >= 0
    # Tokens generated since the engine's previous reading reach the metrics hashes (the loop samples every
    # 2 s, the gateway scrapes every second or so).
    requests.post(f"{platform.gateway}/api/predict/{SERVICE}/v1/chat/completions", timeout=300,
                  headers={"Authorization": f"Bearer {chat}"},
                  json={"model": SERVICE, "max_tokens": 50, "ignore_eos": True,
                        "messages": [{"role": "user", "content": "Count."}]}).raise_for_status()

    def sampled():
        return sum(float(store.hget(key, "engine_generation_tokens") or 0)
                   for key in store.scan_iter(f"ferry:metrics:m:local:{SERVICE}:*"))
    assert eventually(sampled, 60, "no engine tokens in the metrics hashes") >= 50
    session = requests.Session()
    console = f"http://127.0.0.1:{platform.web_port}"
    session.get(f"{console}/login/", timeout=30)
    session.post(f"{console}/login/", timeout=30, headers={"Referer": f"{console}/login/"},
                 data={"username": "admin", "password": (platform.var_dir / "admin-password").read_text().strip(),
                       "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    html = session.get(f"{console}/services/local/{SERVICE}/monitoring/?range=15m", timeout=30).text
    assert re.search(r'id="llm-tpot">[\d.]+ ms<', html), html[html.find("llm-summary") - 200:][:1500]
    assert re.search(r'id="llm-tokens">\d+ \(peak [\d.]+ tokens/s\)<', html)
