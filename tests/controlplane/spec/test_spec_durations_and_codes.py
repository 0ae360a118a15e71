"""Dapr durations (milliseconds or Go syntax) and matching status code lists."""

from __future__ import annotations

import pytest

from fusebox.agent.policy import StatusCodes
from fusebox.controlplane.spec import parse_duration, parse_status_codes
from fusebox.controlplane.spec.durations import format_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500", 0.5),
        (500, 0.5),
        ("0", 0.0),
        (0, 0.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("300us", 0.0003),
        ("300µs", 0.0003),
        ("300μs", 0.0003),
        ("250ns", 2.5e-7),
        ("2m", 120.0),
        ("-1.5h", -5400.0),
        ("+5s", 5.0),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("1h1m1s", 3661.0),
        ("-500", -0.5),
    ],
)
def test_duration_is_read_as_dapr_reads_it(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty string"),
        ("5x", "unknown unit 'x'"),
        ("1.5", "missing unit"),
        ("s", "invalid duration"),
        ("-", "invalid duration"),
        (".s", "invalid duration"),
        ("5 s", "unknown unit ' s'"),
        ("3000000h", "out of range"),
        (1.5, "add a unit"),
        (True, "found bool"),
        (None, "found null"),
        ([1], "found list"),
    ],
)
def test_invalid_duration_says_what_is_accepted(value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert fragment in str(caught.value)


def test_format_duration_renders_go_style() -> None:
    assert [format_duration(s) for s in (0, 0.5, 5, 90, 3600.25, 1e-6)] == [
        "0s",
        "500ms",
        "5s",
        "1m30s",
        "1h0m0.25s",
        "1us",
    ]


@pytest.mark.parametrize(
    ("text", "kind", "ranges"),
    [
        ("", "http", ()),
        ("500", "http", ((500, 500),)),
        ("500,502-504", "http", ((500, 500), (502, 504))),
        ("100-599", "http", ((100, 599),)),
        ("0-16", "grpc", ((0, 16),)),
        ("2,4,14", "grpc", ((2, 2), (4, 4), (14, 14))),
    ],
)
def test_status_codes_parse_into_ranges(
    text: str, kind: str, ranges: tuple[tuple[int, int], ...]
) -> None:
    codes = parse_status_codes(text, kind)  # type: ignore[arg-type]
    assert codes == StatusCodes(ranges)
    assert str(codes) == text


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("500,", "500"),
        (",500", "500"),
        ("500,,502-504", "500,502-504"),
        ("+500,+502-+504", "500,502-504"),
    ],
)
def test_status_codes_read_as_daprs_parse_patterns_reads_them(text: str, same_as: str) -> None:
    # dapr/dapr pkg/resiliency/retry.go parsePatterns skips empty entries, and
    # strconv.Atoi takes a leading "+".
    assert parse_status_codes(text, "http") == parse_status_codes(same_as, "http")


@pytest.mark.parametrize(
    ("text", "kind", "fragment"),
    [
        ("399-299", "http", "reversed"),
        ("1,2,3,4", "http", "HTTP status codes are 100-599"),
        ("600", "http", "out of range"),
        ("429, 500", "http", "spaces, which are not allowed"),
        (" 500", "http", "spaces"),
        (",", "http", "lists no code: Dapr would then match no status code at all"),
        (",,", "grpc", "lists no code"),
        ("500--504", "http", "not a code or a range"),
        ("5xx", "http", "not a code or a range"),
        ("17", "grpc", "gRPC status codes are 0-16"),
        ("-1", "grpc", "not a code or a range"),
    ],
)
def test_invalid_status_codes_are_explained(text: str, kind: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_status_codes(text, kind)  # type: ignore[arg-type]
    assert fragment in str(caught.value)


def test_status_codes_membership() -> None:
    codes = parse_status_codes("429,500-504", "http")
    assert 429 in codes and 502 in codes
    assert 505 not in codes and 430 not in codes
