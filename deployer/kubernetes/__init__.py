"""Ferry on Kubernetes: pure render functions (desired state -> manifests), apply, observe.

Import no Django here: the render modules are plain functions over the dataclasses in `desired.py`, so the
tests, the `--dry-run` endpoint and the init container's model fetcher (`fetchmodel.py`) can use them alone.
The Django-facing parts (building the desired state from a Service row, connecting to a cluster) live in
`build.py` and `connect.py`; the driver in `deployer/drivers/kubernetes.py` ties them together.
"""
