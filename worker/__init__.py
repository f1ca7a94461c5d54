"""The worker: consumes an API's queue, runs the user's handler, stores results and statuses."""
