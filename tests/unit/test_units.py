"""Durations and sizes of the API file."""

from __future__ import annotations

import pytest

from asyncgw.units import parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("15m", 900.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("7d", 7 * 86400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("2h15m30s", 8130.0),
        ("1m500ms", 60.5),
        ("0s", 0.0),
        ("10", 10.0),
        ("2.5", 2.5),
        (" 5m ", 300.0),
        (30, 30.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    got = parse_duration(value)
    assert isinstance(got, float)
    assert got == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "abc",
        "5x",
        "m",
        "5M",
        "1h 30m",
        "1.5.5s",
        "-5",
        "-5s",
        -1,
        -0.5,
        True,
        False,
        None,
        [15],
        b"15m",
    ],
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    "value",
    ["nan", "inf", "-inf", float("nan"), float("inf"), "1" + "0" * 400 + "s"],
    ids=["nan-str", "inf-str", "minus-inf-str", "nan-float", "inf-float", "overflow-str"],
)
def test_parse_duration_refuses_non_finite(value: object) -> None:
    # A duration must be a finite number of seconds: nan or infinity is no duration, and an
    # infinite retention makes every submit fail (timedelta(seconds=inf) overflows).
    with pytest.raises(ValueError):
        parse_duration(value)


def test_parse_duration_error_message_names_value() -> None:
    with pytest.raises(ValueError, match="soon"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("100Mi", 100 * 2**20),
        ("1Gi", 2**30),
        ("1Ki", 1024),
        ("2Ti", 2 * 2**40),
        ("500k", 500_000),
        ("500K", 500_000),
        ("3M", 3_000_000),
        ("1G", 10**9),
        ("1T", 10**12),
        ("64B", 64),
        ("1.5Ki", 1536),
        ("1 Mi", 2**20),
        ("1024", 1024),
        (" 1024 ", 1024),
        ("0", 0),
        (1024, 1024),
        (0, 0),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    got = parse_size(value)
    assert type(got) is int
    assert got == size


@pytest.mark.parametrize(
    "value",
    ["", "abc", "100Mb", "1e3", "-1", "10 Mi B", "Mi", -1, 1.5, True, None, b"1024"],
)
def test_parse_size_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


def test_parse_size_refuses_absurdly_large_number_with_value_error() -> None:
    # The float overflows to infinity; a bad size must still be a ValueError (which the config
    # loader turns into one problem line), not an OverflowError that escapes it.
    with pytest.raises(ValueError):
        parse_size("1" + "0" * 400)
