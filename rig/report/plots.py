"""Plots for the report, as PNG bytes (matplotlib, Agg backend, no global pyplot state), and their CSV tables.

- `error_curve`: a meter's error % against current (log axis), one line per power factor, class limits as a band.
- `current_trace`: current against time around cutoffs and reconnects, the events marked.
- `latency_curve`: reconnect latency (median, p95, max) against RF attenuation, one colour per profile.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rig.errors import ConfigError

DPI = 100
PF_ORDER = ("1", "0.5L", "0.8C")
LATENCY_FIELDS = ("profile", "attenuation_db", "median_s", "p95_s", "max_s")


def _figure(width_in: float = 8.0, height_in: float = 4.5, rows: int = 1, cols: int = 1):
    """A figure of rows x cols axes with fixed margins in inches (a layout engine would draw it twice)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.8 / width_in, right=1 - 0.2 / width_in, bottom=0.55 / height_in,
                           top=1 - 0.4 / height_in, hspace=0.9 * rows / height_in, wspace=0.25)
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, [ax for row in axes for ax in row]


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def to_csv(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A CSV table (comma separated, header first, floats with full precision)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if cell is None else repr(cell) if isinstance(cell, float) else cell for cell in row])
    return out.getvalue()


# -- accuracy -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorPoint:
    """One position's result at one load point: error % with its expanded uncertainty and the class limits."""

    load_point: str
    current_a: float
    pf: str
    error_pct: float
    low_pct: float | None
    high_pct: float | None
    uncertainty_pct: float | None = None
    verdict: str = ""

    @classmethod
    def from_measurement(cls, record: Mapping) -> ErrorPoint:
        """From a measurements.jsonl record of the accuracy plan's `error` measurement."""
        details = record.get("details") or {}
        missing = [key for key in ("current_a", "pf") if key not in details]
        if missing:
            raise ConfigError(f"measurement {record.get('name')!r} of {record.get('test')}: details lack "
                              f"{', '.join(missing)}")
        return cls(str(details.get("load_point", "")), float(details["current_a"]), str(details["pf"]),
                   float(record["value"]), record.get("low"), record.get("high"), record.get("uncertainty"),
                   str(record.get("verdict", "")))


ERROR_CSV_HEADER = ("load_point", "current_a", "pf", "error_pct", "uncertainty_pct", "low_pct", "high_pct", "verdict")


def error_points_csv(points: Iterable[ErrorPoint]) -> str:
    return to_csv(ERROR_CSV_HEADER, [(p.load_point, p.current_a, p.pf, p.error_pct, p.uncertainty_pct, p.low_pct,
                                      p.high_pct, p.verdict) for p in points])


def _pf_key(pf: str) -> tuple[int, str]:
    return (PF_ORDER.index(pf), pf) if pf in PF_ORDER else (len(PF_ORDER), pf)


def _band_edges(currents: list[float]) -> list[float]:
    """Edges of each point's limit segment on a log axis: geometric midpoints between neighbours."""
    if len(currents) == 1:
        return [currents[0] / 1.3, currents[0] * 1.3]
    mids = [math.sqrt(a * b) for a, b in zip(currents, currents[1:], strict=False)]
    return [currents[0] ** 2 / mids[0], *mids, currents[-1] ** 2 / mids[-1]]


def error_curve(meter: str, points: Sequence[ErrorPoint]) -> bytes:
    """Error % against current (log x) for one meter: one line per PF with uncertainty bars, the class limits
    of each PF as a shaded band (each point's limits around it), points out of limits circled in red. `meter`
    titles the plot."""
    if not points:
        raise ValueError(f"error curve of {meter}: no points")
    figure, (ax,) = _figure()
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")
    for index, pf in enumerate(sorted({p.pf for p in points}, key=_pf_key)):
        colour = colours[index % len(colours)]
        line = sorted((p for p in points if p.pf == pf), key=lambda p: p.current_a)
        currents = [p.current_a for p in line]
        edges = _band_edges(currents)
        x, lows, highs = [], [], []
        for i, p in enumerate(line):
            x += [edges[i], edges[i + 1]]
            lows += [p.low_pct if p.low_pct is not None else math.nan] * 2
            highs += [p.high_pct if p.high_pct is not None else math.nan] * 2
        ax.fill_between(x, lows, highs, color=colour, alpha=0.10, linewidth=0)
        ax.plot(x, lows, color=colour, linestyle="--", linewidth=0.8)
        ax.plot(x, highs, color=colour, linestyle="--", linewidth=0.8, label=f"PF {pf} class limits")
        ax.errorbar(currents, [p.error_pct for p in line],
                    yerr=[p.uncertainty_pct or 0.0 for p in line], color=colour, marker="o", markersize=4,
                    capsize=3, linewidth=1.5, label=f"PF {pf} error")
        failed = [p for p in line if p.verdict == "fail"]
        if failed:
            ax.scatter([p.current_a for p in failed], [p.error_pct for p in failed], s=120, facecolors="none",
                       edgecolors="red", linewidths=1.5, zorder=5, label=f"PF {pf} out of limits")
    ax.set_xscale("log")
    ax.axhline(0.0, color="0.4", linewidth=0.6)
    ax.set_xlabel("current (A)")
    ax.set_ylabel("error (%)")
    ax.set_title(f"Error against current: {meter}")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize="small", ncols=2)
    return _png(figure)


# -- current traces -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceEvent:
    label: str
    t: float
    uncertainty_s: float = 0.0


def _clusters(events: Sequence[TraceEvent], gap_s: float) -> list[list[TraceEvent]]:
    clusters: list[list[TraceEvent]] = []
    for event in sorted(events, key=lambda e: e.t):
        if clusters and event.t - clusters[-1][-1].t <= gap_s:
            clusters[-1].append(event)
        else:
            clusters.append([event])
    return clusters


def current_trace(samples: Sequence[tuple[float, float]], events: Sequence[TraceEvent], *, unit: str = "A",
                  title: str = "Current against time", gap_s: float = 0.3, margin_s: float = 0.1) -> bytes:
    """Readings (t, value) against time with the events as vertical lines (their uncertainty shaded): the
    whole trace on top, then one zoomed panel per group of events (events closer than gap_s share one; each
    spans margin_s, plus half the group's spread, around it). Time is in seconds from the first reading."""
    if not samples:
        raise ValueError(f"{title}: no readings")
    t0 = samples[0][0]
    ordered = sorted(events, key=lambda e: e.t)
    clusters = _clusters(ordered, gap_s)
    figure, axes = _figure(8.0, 3.2 + 2.0 * len(clusters), rows=1 + len(clusters))
    colours = ("tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive")
    colour_of = {label: colours[i % len(colours)] for i, label in enumerate(dict.fromkeys(e.label for e in ordered))}
    panels = [(axes[0], ordered, None)]
    for ax, cluster in zip(axes[1:], clusters, strict=True):
        margin = margin_s + (cluster[-1].t - cluster[0].t) / 2
        panels.append((ax, cluster, (cluster[0].t - margin, cluster[-1].t + margin)))
    values = [v for _, v in samples]
    low, high = min(0.0, min(values)), max(0.0, max(values))
    pad = (high - low) * 0.05 or 1.0
    for ax, shown_events, window in panels:
        ax.set_ylim(low - pad, high + pad)
        shown = list(samples) if window is None else [(t, v) for t, v in samples if window[0] <= t <= window[1]]
        ax.plot([t - t0 for t, _ in shown], [v for _, v in shown], color="tab:blue", linewidth=1.2,
                marker="." if window is not None else None, markersize=4, label="reading")
        for event in shown_events:
            x = event.t - t0
            colour = colour_of[event.label]
            if event.uncertainty_s > 0:
                ax.axvspan(x - event.uncertainty_s, x + event.uncertainty_s, color=colour, alpha=0.15, linewidth=0)
            ax.axvline(x, color=colour, linestyle="--", linewidth=1.2, label=f"{event.label} ({x:.3f} s)")
        if window is not None:
            ax.set_xlim(window[0] - t0, window[1] - t0)
            ax.set_title(", ".join(dict.fromkeys(e.label for e in shown_events)), fontsize="medium")
        ax.set_ylabel(f"current ({unit})")
        ax.grid(True, linewidth=0.3)
        ax.legend(fontsize="small", loc="upper right")
    axes[-1].set_xlabel("time from first reading (s)")
    axes[0].set_title(title)
    return _png(figure)


def trace_csv(samples: Sequence[tuple[float, float]], unit: str = "A") -> str:
    """Readings as t (monotonic s), t from the first reading (s), value."""
    t0 = samples[0][0] if samples else 0.0
    return to_csv(("t_mono_s", "t_rel_s", f"value_{unit}"), [(t, t - t0, v) for t, v in samples])


def events_csv(events: Sequence[TraceEvent]) -> str:
    return to_csv(("event", "t_mono_s", "uncertainty_s"), [(e.label, e.t, e.uncertainty_s)
                                                         for e in sorted(events, key=lambda e: e.t)])


# -- link latency ---------------------------------------------------------------------------------------------------


def _latency_rows(table: Iterable[Mapping]) -> list[dict]:
    rows = []
    for index, row in enumerate(table):
        missing = [name for name in LATENCY_FIELDS if name not in row]
        if missing:
            raise ConfigError(f"latency table row {index}: missing {', '.join(missing)} "
                              f"(each row needs {', '.join(LATENCY_FIELDS)})")
        try:
            rows.append({"profile": str(row["profile"]),
                         **{name: float(row[name]) for name in LATENCY_FIELDS[1:]}})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"latency table row {index} (profile {row['profile']!r}): {exc}") from None
    if not rows:
        raise ConfigError("latency table: no rows")
    return rows


def latency_csv(table: Iterable[Mapping]) -> str:
    rows = _latency_rows(table)
    return to_csv(LATENCY_FIELDS, [[row[name] for name in LATENCY_FIELDS] for row in rows])


def latency_curve(table: Iterable[Mapping], *, title: str = "Reconnect latency against attenuation") -> bytes:
    """Latency (median solid, p95 dashed, max dotted) against attenuation (dB), one colour per profile.

    table: rows with profile, attenuation_db, median_s, p95_s, max_s (mappings, e.g. dicts or CSV rows).
    """
    rows = _latency_rows(table)
    figure, (ax,) = _figure()
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    for index, profile in enumerate(dict.fromkeys(row["profile"] for row in rows)):
        colour = colours[index % len(colours)]
        line = sorted((row for row in rows if row["profile"] == profile), key=lambda row: row["attenuation_db"])
        x = [row["attenuation_db"] for row in line]
        for field, style, name in (("median_s", "-", "median"), ("p95_s", "--", "p95"), ("max_s", ":", "max")):
            ax.plot(x, [row[field] for row in line], linestyle=style, marker="o", markersize=3, color=colour,
                    label=f"{profile} {name}")
    ax.set_xlabel("attenuation (dB)")
    ax.set_ylabel("latency (s)")
    ax.set_title(title)
    ax.grid(True, linewidth=0.3)
    ax.legend(fontsize="small", ncols=3)
    return _png(figure)
