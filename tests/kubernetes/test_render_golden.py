"""Golden files: every example service file, and the LLM engines' (tests/kubernetes/llm/), rendered for raw
(HTTPRoute), raw (Istio) and Knative clusters, the model mesh's pools (tests/kubernetes/mesh/) once, and every
rendered object valid against the real schemas.

A change to rendering shows as a diff of tests/kubernetes/golden/*.yaml. After checking that the diff is
what you meant: FERRY_UPDATE_GOLDEN=1 python -m pytest tests/kubernetes/test_render_golden.py
"""

import os

import pytest
import yaml

from deployer.kubernetes.render import render, to_yaml
from tests.kubernetes.helpers import (
    CLUSTER_KINDS,
    EXAMPLE_NAMES,
    GOLDEN_DIR,
    LLM_NAMES,
    MESH_NAMES,
    desired_for,
    example,
)
from tests.kubernetes.schemas import validate

# A model mesh pool renders the same on every kind of cluster (test_render_pool.py): one golden file each.
CASES = [(name, flavor, api) for name in EXAMPLE_NAMES + LLM_NAMES for flavor, api in CLUSTER_KINDS] + \
    [(name, "raw", "gateway-api") for name in MESH_NAMES]


def _golden_path(name: str, flavor: str, api: str):
    return GOLDEN_DIR / f"{name}.{flavor}-{api}.yaml"


@pytest.mark.parametrize(("name", "flavor", "api"), CASES)
def test_it_renders_each_example_as_its_golden_file(name, flavor, api):
    rendered = to_yaml(render(desired_for(example(name), flavor=flavor, traffic_api=api)))
    path = _golden_path(name, flavor, api)
    if os.environ.get("FERRY_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered)
    assert path.exists(), f"{path.name} is missing: run with FERRY_UPDATE_GOLDEN=1 to write it"
    assert rendered == path.read_text(), f"{path.name} differs from what is rendered now"


@pytest.mark.parametrize(("name", "flavor", "api"), CASES)
def test_it_renders_only_objects_the_real_schemas_accept(name, flavor, api):
    manifests = render(desired_for(example(name), flavor=flavor, traffic_api=api))
    assert manifests
    for manifest in manifests:
        validate(manifest)


@pytest.mark.parametrize(("name", "flavor", "api"), CASES)
def test_it_keeps_golden_files_that_are_themselves_valid(name, flavor, api):
    """The golden files are documentation too: each document in them validates on its own."""
    path = _golden_path(name, flavor, api)
    if not path.exists():
        pytest.skip(f"{path.name} not written yet")
    for manifest in yaml.safe_load_all(path.read_text()):
        validate(manifest)
