"""Waiting for a condition with a deadline that says what was waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from rig.timing import EventTimeout

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.05) -> T:
    """The first truthy value of predicate(), asked every poll_s; EventTimeout naming `what` and the last value
    after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise EventTimeout(f"waited {timeout_s:g} s for {what}; last seen: {value!r}")
        time.sleep(poll_s)


def poll_until(predicate: Callable[[], T], timeout_s: float, poll_s: float = 0.05) -> T | None:
    """Like wait_until, but None when the deadline passes (the plan judges the absence)."""
    try:
        return wait_until(predicate, timeout_s, "a condition", poll_s)
    except EventTimeout:
        return None
