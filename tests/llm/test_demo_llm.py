"""`make run`'s LLM demo (FERRY_DEMO_LLM=1): `manage.py ferry_demo_llm` makes the tiny model with the engine's
python and deploys demo_chat; scripts/run starts it only when asked. (The engine serving it is the one
test_vllm_service.py deploys: the same processor, the same file but for the name.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

from processors.tiny_llm import MARKER
from services.models import Service

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_the_demo_makes_the_tiny_model_and_deploys_demo_chat_from_it(settings, engine_python, tmp_path):
    settings.FERRY_VLLM_PYTHON = engine_python
    settings.FERRY_FILE_SOURCE_ROOTS = [tmp_path]
    settings.VAR_DIR = tmp_path / "var"
    call_command("ferry_demo_llm", wait=0)

    model = tmp_path / "demo" / "tiny-llm"
    assert (model / MARKER).is_file() and (model / "model.safetensors").is_file()
    config = json.loads((model / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"]) == (128, 2, 2)
    assert "chat_template" in json.loads((model / "tokenizer_config.json").read_text()) or \
        (model / "chat_template.jinja").is_file()
    service = Service.objects.get(name="demo_chat")
    assert service.spec["processor"] == "vllm" and service.spec["model_path"] == model.resolve().as_uri() + "/"
    assert service.spec["metadata"]["memory"] == 6000

    call_command("ferry_demo_llm", wait=0)  # a second start of `make run` keeps what is there
    assert Service.objects.filter(name="demo_chat").count() == 1


def test_the_tiny_model_is_the_same_every_time(engine_python, tmp_path):
    digests = []
    for name in ("one", "two"):
        subprocess.run([engine_python, "-m", "processors.tiny_llm", str(tmp_path / name)], cwd=ROOT, check=True,
                       capture_output=True, timeout=600)
        digests.append(subprocess.run(["sha256sum", "model.safetensors", "tokenizer.json"], cwd=tmp_path / name,
                                      capture_output=True, text=True, check=True).stdout)
    assert digests[0] == digests[1]


def test_make_run_starts_the_llm_demo_only_when_asked():
    procfile = (ROOT / "Procfile").read_text()
    assert "\ndemo_llm: python manage.py ferry_demo_llm " in procfile
    run = (ROOT / "scripts" / "run").read_text()
    assert '[[ $name == demo_llm && ! ${FERRY_DEMO_LLM:-0} =~ ^(1|true|yes|on)$ ]] && continue' in run
