"""A handler that does nothing, for measuring asyncgw itself."""


class Handler:
    async def handle_async(self, payload):
        return None
