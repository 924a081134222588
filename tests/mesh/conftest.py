from tests.e2e.conftest import local_cluster  # noqa: F401 -- fixture: a node agent and its model servers
from tests.gateway.conftest import gateway  # noqa: F401 -- fixture: a real gateway process
