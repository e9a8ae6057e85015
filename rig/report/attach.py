"""Attach plots and tables to the running test's Allure result (outside a test reported by allure-pytest, nothing).

A thread that runs one position of a together plan (rig/plan/shared.py) `capture()`s what it attaches; the
position's own test `replay()`s it into its Allure result. A plot captured so is drawn in a worker process
meanwhile (`attach_plot`): drawing is CPU work, and 24 positions' plots drawn by their threads would hold the
rig's interpreter while other positions are still being timed.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

import allure

from rig.report import plots

_captured = threading.local()
PLOT_WORKERS = min(2, os.cpu_count() or 1)
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


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


def attach_plot(name: str, draw: Callable[..., bytes], *args, **kwargs) -> None:
    """Attach the PNG `draw(*args, **kwargs)` returns (draw: a module-level function, its arguments picklable).
    Within a capture it is drawn in a worker process while the thread goes on, and attached at the replay;
    otherwise here and now. A worker that fails to start or dies leaves the drawing to the replay."""
    if getattr(_captured, "calls", None) is None:
        attach_png(name, draw(*args, **kwargs))
        return
    drawing = _submit(draw, args, kwargs)

    def attach_drawn() -> None:
        png = None
        if drawing is not None:
            try:
                png = drawing.result()
            except BrokenProcessPool:
                png = None
        attach_png(name, png if png is not None else draw(*args, **kwargs))

    _captured.calls.append(attach_drawn)


def _ignore_interrupts() -> None:
    """A plot worker leaves Ctrl-C to the rig, which ends the run and drives the bench safe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _submit(draw: Callable[..., bytes], args: tuple, kwargs: dict) -> Future | None:
    global _pool
    try:
        with _pool_lock:
            if _pool is None:
                _pool = ProcessPoolExecutor(PLOT_WORKERS, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_ignore_interrupts)
                atexit.register(_pool.shutdown, cancel_futures=True)
            return _pool.submit(draw, *args, **kwargs)
    except (BrokenProcessPool, OSError, RuntimeError):
        return None


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
    attach_plot(name, plots.latency_curve, rows)
    attach_csv(f"{name} (table)", plots.latency_csv(rows))
