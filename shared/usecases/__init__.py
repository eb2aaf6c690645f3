"""The use cases, one verb per module: each takes its collaborators (``Collaborators``) as an
argument and knows nothing of HTTP, Event Grid or timers (``shared.adapters`` do)."""
