"""Bytes in, bytes out: returns the SHA-256 digest of the payload as raw bytes."""

import hashlib


class Handler:
    def __init__(self, config):
        pass

    def handle_async(self, payload):
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        return hashlib.sha256(data).digest()
