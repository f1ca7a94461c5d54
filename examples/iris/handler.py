"""JSON in, JSON out: classifies an iris flower from its measurements with a fixed rule."""


class Handler:
    def __init__(self, config):
        self.threshold = float(config.get("threshold", 2.5))

    def handle_async(self, payload, request_id):
        petal_length = float(payload["petal_length"])
        petal_width = float(payload.get("petal_width", 0.0))
        if petal_length < self.threshold:
            label = "setosa"
        elif petal_width < 1.75:
            label = "versicolor"
        else:
            label = "virginica"
        return {"label": label, "request_id": request_id}
