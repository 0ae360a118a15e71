"""Outcome classification and Dapr's retry ``matching`` rules."""

from __future__ import annotations

import email.utils

import pytest

from fusebox.agent.classify import (
    FAILURE,
    Outcome,
    fallback_matches,
    grpc_outcome,
    http_outcome,
    parse_retry_after,
    retry_matches,
)
from fusebox.agent.policy import FallbackPolicy, RetryPolicy, StatusCodes

# Dapr's conformance lists: "200,201,202,203,204,300-309,400,500,505-509" and "2,8-10,11,13-15"
HTTP_CODES = StatusCodes(((200, 204), (300, 309), (400, 400), (500, 500), (505, 509)))
GRPC_CODES = StatusCodes(((2, 2), (8, 10), (11, 11), (13, 15)))


@pytest.mark.parametrize(("status", "success"), [
    (100, False), (199, False), (200, True), (302, True), (399, True), (400, False), (503, False),
])
def test_http_rule_fails_below_200_and_above_399(status: int, success: bool) -> None:
    assert http_outcome(status).success is success


def test_grpc_rule_fails_every_code_but_ok() -> None:
    assert grpc_outcome(0).success
    assert not any(grpc_outcome(code).success for code in range(1, 17))


@pytest.mark.parametrize(("status", "retried"), [
    (400, True), (401, False), (500, True), (501, False), (504, False), (505, True), (509, True),
    (510, False),
])
def test_http_matching_list_decides_which_failures_are_retried(status: int, retried: bool) -> None:
    policy = RetryPolicy("r", http_status_codes=HTTP_CODES)
    assert retry_matches(policy, http_outcome(status)) is retried


@pytest.mark.parametrize(("code", "retried"), [
    (1, False), (2, True), (7, False), (8, True), (10, True), (11, True), (12, False), (13, True),
    (15, True), (16, False),
])
def test_grpc_matching_list_decides_which_failures_are_retried(code: int, retried: bool) -> None:
    policy = RetryPolicy("r", grpc_status_codes=GRPC_CODES)
    assert retry_matches(policy, grpc_outcome(code)) is retried


def test_only_500_retries_500_but_not_501_or_400() -> None:
    policy = RetryPolicy("r", http_status_codes=StatusCodes(((500, 500),)))
    assert retry_matches(policy, http_outcome(500))
    assert not retry_matches(policy, http_outcome(501))
    assert not retry_matches(policy, http_outcome(400))


def test_empty_lists_and_failures_without_status_always_match() -> None:
    assert retry_matches(RetryPolicy("r"), http_outcome(418))
    restricted = RetryPolicy("r", http_status_codes=StatusCodes(((500, 500),)))
    assert retry_matches(restricted, FAILURE)
    assert fallback_matches(FallbackPolicy("f", http_status_codes=HTTP_CODES), FAILURE)
    assert not fallback_matches(FallbackPolicy("f", http_status_codes=HTTP_CODES),
                                http_outcome(503))


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120.0
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after(date, now=lambda: 1_000_000.0) == pytest.approx(30.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_outcome_carries_retry_after() -> None:
    assert http_outcome(503, retry_after=2.0) == Outcome(False, http_status=503, retry_after=2.0)
