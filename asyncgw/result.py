"""The value a handler returns to give its result a content type of its own."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Result:
    """Binary result with an explicit Content-Type, e.g. ``Result(png, "image/png")``."""

    body: bytes
    content_type: str = "application/octet-stream"
