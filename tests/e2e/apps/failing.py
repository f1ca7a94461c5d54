"""Exposes Failing as the Handler of an API."""

from handlers import Failing as Handler

__all__ = ["Handler"]
