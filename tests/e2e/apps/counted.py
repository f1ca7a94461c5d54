"""Exposes Counted as the Handler of an API."""

from handlers import Counted as Handler

__all__ = ["Handler"]
