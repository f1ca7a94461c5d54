"""The HTTP gateway: accepts requests, records and queues them, and serves their status and
results (SPEC §3)."""

from asyncgw.gateway.app import create_app

__all__ = ["create_app"]
