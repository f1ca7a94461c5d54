"""Text in, JSON out, with an async handler: upper-cases the text it is sent."""


class Handler:
    def __init__(self, config):
        pass

    async def handle_async(self, payload):
        return {"text": payload.upper(), "length": len(payload)}
