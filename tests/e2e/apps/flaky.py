"""Exposes Flaky as the Handler of an API."""

from handlers import Flaky as Handler

__all__ = ["Handler"]
