"""Exposes Slow as the Handler of an API."""

from handlers import Slow as Handler

__all__ = ["Handler"]
