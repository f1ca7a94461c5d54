"""A streamed result: yields the numbers 1..n as text lines, one chunk at a time, so a result of
any size is written to the blob store without being held in memory."""


class Handler:
    def __init__(self, config):
        pass

    def handle_async(self, payload):
        n = int(payload["n"])
        for i in range(1, n + 1):
            yield f"{i}\n".encode()
