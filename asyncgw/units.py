"""Parsing of the API file's durations (``15m``, ``1h30m``) and sizes (``100Mi``, ``1G``)."""

import math
import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T|B)?")
_MAX_SIZE = 2**63
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_duration(value: object) -> float:
    """Seconds in ``value``: a number of seconds or a string like ``90s``, ``15m``, ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 15m or 2h, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        pos, seconds = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text):
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"expected a duration like 30s, 15m or 2h, got {value!r}"
                ) from None
    else:
        raise ValueError(f"expected a duration like 30s, 15m or 2h, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes in ``value``: a number of bytes or a string like ``100Mi``, ``1Gi``, ``500k``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 100Mi or 1Gi, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value.strip())):
        number = float(m.group(1)) * _SIZE_UNITS[m.group(2)]
        if not math.isfinite(number) or number > _MAX_SIZE:
            raise ValueError(f"size {value!r} is too large")
        size = int(number)
    else:
        raise ValueError(f"expected a size like 100Mi or 1Gi, got {value!r}")
    if size < 0:
        raise ValueError(f"a size cannot be negative, got {value!r}")
    return size
