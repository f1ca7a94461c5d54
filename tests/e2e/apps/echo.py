"""Exposes Echo as the Handler of an API."""

from handlers import Echo as Handler

__all__ = ["Handler"]
