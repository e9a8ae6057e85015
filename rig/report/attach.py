"""Attach plots and tables to the running test's Allure result (outside a test reported by allure-pytest, nothing).

A thread that runs one position of a together plan (rig/plan/shared.py) `capture()`s what it attaches; the
position's own test `replay()`s it into its Allure result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import allure

from rig.report import plots

_captured = threading.local()


@contextmanager
def capture() -> Iterator[list[Callable[[], None]]]:
    """Within: this thread's attachments and parameters are kept (as calls to make later), not attached."""
    calls: list[Callable[[], None]] = []
    _captured.calls = calls
    try:
        yield calls
    finally:
        _captured.calls = None


def replay(calls: list[Callable[[], None]]) -> None:
    """Attach what a capture kept, to the running test."""
    for call in calls:
        call()


def _attach(call: Callable[[], None]) -> None:
    calls = getattr(_captured, "calls", None)
    if calls is not None:
        calls.append(call)
    else:
        call()


def attach_png(name: str, png: bytes) -> None:
    _attach(lambda: allure.attach(png, name=name, attachment_type=allure.attachment_type.PNG))


def attach_csv(name: str, text: str) -> None:
    _attach(lambda: allure.attach(text, name=name, attachment_type=allure.attachment_type.CSV))


def parameter(name: str, value: object) -> None:
    """A parameter of the running test in its Allure result (load point, voltage, ...)."""
    _attach(lambda: allure.dynamic.parameter(name, value))


def attach_text(name: str, text: str) -> None:
    _attach(lambda: allure.attach(text, name=name, attachment_type=allure.attachment_type.TEXT))


def attach_latency(table: Iterable[Mapping], name: str = "reconnect latency against attenuation") -> None:
    """The latency plot and its table (rows: profile, attenuation_db, median_s, p95_s, max_s)."""
    rows = list(table)
    attach_png(name, plots.latency_curve(rows))
    attach_csv(f"{name} (table)", plots.latency_csv(rows))
