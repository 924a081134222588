"""What Ferry's processes agree on, in one place: the shapes they exchange through Redis and the names they
use there. No Django and no I/O of its own (functions take a Redis client), so the gateway, the node agent,
the control plane and the CLI can all import it (docs/architecture.md, "Layers")."""
