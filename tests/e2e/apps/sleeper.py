"""Exposes Sleeper as the Handler of an API."""

from handlers import Sleeper as Handler

__all__ = ["Handler"]
