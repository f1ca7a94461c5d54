"""Exceptions shared by the backends and the services that use them."""


class AsyncgwError(Exception):
    """Base class of asyncgw's own errors."""


class BackendUnavailable(AsyncgwError):
    """A queue, store or blob server cannot be reached or did not answer in time."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend} unavailable: {detail}")
        self.backend = backend
        self.detail = detail


class BlobNotFound(AsyncgwError):
    """No blob is stored under the key."""


class DuplicateRequest(AsyncgwError):
    """A record with the same API and idempotency key exists already."""


class PayloadTooLarge(AsyncgwError):
    """A streamed body went past the API's max_payload_size."""


class ConfigError(AsyncgwError):
    """The API file or the environment is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
