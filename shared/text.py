"""Text helpers every layer uses for messages: one way to cut a message, one way to name a JSON type."""

from __future__ import annotations


def trim(text: object, limit: int) -> str | None:
    """``text`` stripped and cut to at most ``limit`` characters (its start kept, "…" marking the
    cut); None stays None."""
    if text is None:
        return None
    text = str(text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_type(value: object) -> str:
    """What a decoded JSON value is, as a message says it ("a string", "an array", "null" ...)."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "an array"),
                       (dict, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__
