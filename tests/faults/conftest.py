"""Faults injected into a running local cluster: the e2e cluster (a real node agent and model servers, the
reconciler), a real gateway process, and a Celery worker running the reconciles the agent enqueues."""

from tests.e2e.conftest import demo_models, local_cluster  # noqa: F401 -- fixtures
from tests.gateway.conftest import gateway  # noqa: F401 -- fixture: a real gateway process
