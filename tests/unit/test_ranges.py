"""The single ``Range: bytes=a-b`` header the result download honours."""

from __future__ import annotations

import pytest

from asyncgw.gateway.routes import _byte_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=0-0", (0, 0)),
        ("bytes=5-5", (5, 5)),
        ("bytes=100-", (100, None)),
        ("bytes=0-", (0, None)),
        ("bytes=007-010", (7, 10)),
        ("  bytes=1-2  ", (1, 2)),
        ("bytes=10-99999999999999999999", (10, 99999999999999999999)),
    ],
)
def test_served_ranges(header: str, expected: tuple[int, int | None]) -> None:
    assert _byte_range(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "bytes=-500",  # suffix range: not served, the whole result is sent
        "bytes=-",
        "bytes=5-2",  # end before start
        "bytes=0-1,5-6",  # several ranges
        "bytes=0-1, 5-6",
        "items=0-1",
        "bytes 0-1",
        "bytes=a-b",
        "bytes=1.5-2",
        "bytes=+1-2",
        "bytes=0-1x",
        "bytes=",
        "0-1",
    ],
)
def test_ranges_not_served(header: str | None) -> None:
    assert _byte_range(header) is None
