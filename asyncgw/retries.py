"""Pure decisions about a failed attempt: retry or fail, and how long to wait before the retry.
The worker applies them; the wait itself happens in the queue, never in a worker slot."""

from __future__ import annotations

import math
import random
from enum import StrEnum

#: Delays double per attempt up to this many doublings; later attempts wait as long as this one.
MAX_DOUBLINGS = 16
#: Each delay is spread by up to this fraction either way, so failures of a burst do not retry
#: in lockstep.
JITTER = 0.1


class Outcome(StrEnum):
    """What becomes of a request whose attempt failed."""

    RETRY = "retry"
    FAIL = "fail"


#: Errors that no retry can mend: the payload itself is wrong.
PERMANENT_ERRORS = frozenset({"PayloadError"})


def decide(error_type: str, attempts: int, retries: int) -> Outcome:
    """``attempts`` tries have been made (counting the one that just failed with
    ``error_type``); ``retries`` extra tries are allowed after the first."""
    if error_type in PERMANENT_ERRORS:
        return Outcome.FAIL
    return Outcome.RETRY if attempts <= retries else Outcome.FAIL


def retry_level(attempts: int) -> int:
    """Which doubling of the backoff the retry after ``attempts`` tries waits for (1-based)."""
    return max(1, min(attempts, MAX_DOUBLINGS))


def retry_delay_s(attempts: int, backoff_s: float, spread: float | None = None) -> float:
    """Seconds to wait before the next try: ``backoff_s`` after the first failure, doubling
    after each later one, times a jitter factor in ``[1 - JITTER, 1 + JITTER]``. ``spread`` in
    ``[-1, 1]`` picks the factor (random when ``None``)."""
    if spread is None:
        spread = random.uniform(-1.0, 1.0)
    base = math.ldexp(backoff_s, retry_level(attempts) - 1)
    return max(0.0, base * (1 + JITTER * spread))
