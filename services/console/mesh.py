"""The service page's "Model mesh" panel: where a pool has loaded its models, or where a model in a pool is
loaded, and the placer's recent decisions (services/selectors/mesh.py reads them)."""

from services.models import Service
from services.selectors.mesh import in_mesh, mesh_events, placements_of

# Copies are loaded and unloaded on demand, by requests, while the service itself rests: the panel keeps polling
# whatever the service's phase (the rest of the page stops once the service is at rest).
MESH_POLL_SECONDS = 3
TONES = {"Loaded": "ok", "Loading": "busy", "Failed": "bad"}


def mesh_panel(service: Service) -> dict:
    """The panel's context; `mesh` is None for a service outside the model mesh (no panel)."""
    if not in_mesh(service):
        return {"mesh": None}
    placement = placements_of(service)
    return {"mesh": placement, "mesh_rows": [{"copy": copy, "tone": TONES.get(copy.state, "muted")}
                                             for copy in placement.copies],
            "mesh_events": mesh_events(service), "mesh_poll_seconds": MESH_POLL_SECONDS}
