"""Attach plots and tables to the running test's Allure result (outside a test reported by allure-pytest, nothing)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import allure

from rig.report import plots


def attach_png(name: str, png: bytes) -> None:
    allure.attach(png, name=name, attachment_type=allure.attachment_type.PNG)


def attach_csv(name: str, text: str) -> None:
    allure.attach(text, name=name, attachment_type=allure.attachment_type.CSV)


def parameter(name: str, value: object) -> None:
    """A parameter of the running test in its Allure result (load point, voltage, ...)."""
    allure.dynamic.parameter(name, value)


def attach_text(name: str, text: str) -> None:
    allure.attach(text, name=name, attachment_type=allure.attachment_type.TEXT)


def attach_latency(table: Iterable[Mapping], name: str = "reconnect latency against attenuation") -> None:
    """The latency plot and its table (rows: profile, attenuation_db, median_s, p95_s, max_s)."""
    rows = list(table)
    attach_png(name, plots.latency_curve(rows))
    attach_csv(f"{name} (table)", plots.latency_csv(rows))
