"""Waiting for a condition with a deadline that says what was waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from rig import progress
from rig.plan.shared import check_stopping
from rig.timing import EventTimeout

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.05) -> T:
    """The first truthy value of predicate(), asked every poll_s; EventTimeout naming `what` and the last value
    after timeout_s. Shows its progress; an interrupted run ends it (Interrupted)."""
    start = time.monotonic()
    deadline = start + timeout_s
    with progress.tracking():
        while True:
            value = predicate()
            if value:
                return value
            now = time.monotonic()
            if now > deadline:
                raise EventTimeout(f"waited {timeout_s:g} s for {what}; last seen: {value!r}")
            check_stopping(f"waiting for {what}")
            progress.update(f"waiting for {what}", round(now - start, 1), round(timeout_s, 1), "s", deadline - now)
            time.sleep(poll_s)


def hold(duration_s: float, what: str) -> None:
    """Sleep duration_s (a hold, a settling time), showing it; an interrupted run ends it (Interrupted)."""
    start = time.monotonic()
    end = start + duration_s
    with progress.tracking():
        while (left := end - time.monotonic()) > 0:
            check_stopping(what)
            progress.update(what, round(duration_s - left, 1), round(duration_s, 1), "s", left)
            time.sleep(min(left, 0.25))


def poll_until(predicate: Callable[[], T], timeout_s: float, poll_s: float = 0.05) -> T | None:
    """Like wait_until, but None when the deadline passes (the plan judges the absence)."""
    try:
        return wait_until(predicate, timeout_s, "a condition", poll_s)
    except EventTimeout:
        return None
