"""Accuracy certificate per meter, HTML (jinja2) and PDF (reportlab), from a run folder's run.json and
measurements.jsonl: meter identity and rating, bench, reference and their calibration, every load point's
error against its limit with its uncertainty, verdict per point and overall, blank signature lines."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from rig.config import BenchConfig, bench_roles
from rig.errors import ConfigError

ACCURACY_PLAN = "accuracy"
REPORTED_ROLES = ("reference", "source", "current", "counter")  # instruments an accuracy result depends on
OTHER_TESTS = {"pulses_at_starting_current": "Starting current: pulses registered",
               "creep_pulses": "No-load creep: pulses at 1.1 Un, no current",
               "register_error": "Energy register against the reference",
               "register_vs_test_output": "Energy register against the test output"}
DECISION_RULE = ("Decision rule: a point passes when its measured error lies within the limit (simple acceptance); "
                 "the expanded uncertainty (k = 2) of every error is stated beside it.")
TEMPLATES = Path(__file__).parent / "templates"


# -- the run folder --------------------------------------------------------------------------------------


@dataclass
class RunData:
    folder: Path
    run: dict
    measurements: list[dict]


def read_run(folder: Path) -> RunData:
    """run.json and measurements.jsonl of a run folder; ConfigError naming the file if either is unreadable."""
    folder = Path(folder)
    run_path, measurements_path = folder / "run.json", folder / "measurements.jsonl"
    try:
        run = json.loads(run_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder}: not a run folder (no run.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{run_path}: unreadable: {exc}") from None
    measurements = []
    lines = measurements_path.read_text().splitlines() if measurements_path.exists() else []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            measurements.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break  # a run killed while writing its last measurement
            raise ConfigError(f"{measurements_path}:{number}: not a JSON object: {exc.msg}") from None
    return RunData(folder, run, measurements)


def plan_of(test: str) -> str:
    """The plan a test belongs to: its folder under testplans/ ('accuracy'), else its module without 'test_'."""
    parts = [p for p in test.split("::", 1)[0].split("/") if p]
    if parts and parts[0] == "testplans":
        parts = parts[1:]
    if len(parts) > 1:
        return parts[0]
    return Path(parts[0]).stem.removeprefix("test_") if parts else ""


def describe_meters(config: BenchConfig, instruments: dict[str, dict]) -> list[dict]:
    """run.json's meters: position, serial, class, rating, and maker, model and firmware read from the meter."""
    meters = []
    for meter in config.positions:
        identity = instruments.get(f"meter@{meter.position}", {})
        meters.append({"position": meter.position, "serial": meter.serial, "accuracy_class": meter.accuracy_class,
                       "manufacturer": identity.get("manufacturer"), "model": identity.get("model"),
                       "firmware": identity.get("firmware"), "ib_a": meter.ib_a, "in_a": meter.in_a,
                       "imax_a": meter.imax_a, "un_v": meter.un_v, "fn_hz": meter.fn_hz,
                       "meter_constant_imp_per_kwh": meter.meter_constant_imp_per_kwh,
                       "test_output_imp_per_kwh": meter.test_output_imp_per_kwh})
    return meters


def calibrations(config: BenchConfig) -> dict[str, dict]:
    """role -> {date, certificate, due} for every role whose calibration the bench gives."""
    return {role: role_config.calibration.model_dump(mode="json")
            for role, role_config in bench_roles(config).items() if role_config.calibration is not None}


# -- the certificate's content ----------------------------------------------------------------------------


class LimitedRow:
    """A row checked against limits low and high (None: that side open)."""

    low: float | None
    high: float | None

    @property
    def limit_text(self) -> str:
        return limits_text(self.low, self.high)


@dataclass
class PointRow(LimitedRow):
    load_point: str
    pf: str
    current_a: float | None
    error_pct: float
    uncertainty_pct: float | None
    low: float | None
    high: float | None
    verdict: str


@dataclass
class OtherRow(LimitedRow):
    title: str
    value: float
    unit: str
    low: float | None
    high: float | None
    verdict: str


@dataclass
class InstrumentRow:
    role: str
    manufacturer: str
    model: str
    serial: str
    firmware: str
    calibrated: str
    certificate: str
    due: str
    status: str  # "valid", "OVERDUE" or "not given"


@dataclass
class Certificate:
    number: str
    serial: str
    position: int | None
    manufacturer: str
    model: str
    firmware: str
    accuracy_class: str
    rating: str
    bench: str
    host: str
    git_revision: str
    test_started: str
    test_finished: str
    issued: str
    instruments: list[InstrumentRow]
    points: list[PointRow]
    others: list[OtherRow]
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        rows = [*self.points, *self.others]
        if any(row.verdict == "fail" for row in rows):
            return "FAIL"
        marginal = sum(row.verdict == "marginal" for row in rows)
        return f"PASS ({marginal} marginal)" if marginal else "PASS"


def limits_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None and math.isclose(low, -high):
        return f"±{high:g}"
    if high is None:
        return f"≥ {low:g}"
    if low is None:
        return f"≤ {high:g}"
    return f"{low:g} .. {high:g}"


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _rating(meter: dict) -> str:
    if "imax_a" not in meter:
        return f"class {meter.get('accuracy_class', '-')} (rating not recorded in run.json)"
    base = f"Ib {meter['ib_a']:g} A" if meter.get("ib_a") is not None else f"In {meter['in_a']:g} A"
    text = (f"{base}, Imax {meter['imax_a']:g} A, Un {meter['un_v']:g} V, {meter['fn_hz']:g} Hz, "
            f"{meter['meter_constant_imp_per_kwh']:.10g} imp/kWh")
    if meter.get("test_output_imp_per_kwh"):
        text += f" (test output {meter['test_output_imp_per_kwh']:.10g} imp/kWh)"
    return text


def _instrument_rows(run: dict, test_day: date | None) -> list[InstrumentRow]:
    rows = []
    instruments = run.get("instruments", {})
    for role in [r for r in REPORTED_ROLES if r in instruments]:
        identity = instruments[role]
        calibration = identity.get("calibration")
        if calibration:
            due = calibration.get("due")
            status = "OVERDUE" if due and test_day and date.fromisoformat(due) < test_day else "valid"
        else:
            calibration, status = {}, "not given"
        rows.append(InstrumentRow(role, identity.get("manufacturer", "-"), identity.get("model", "-"),
                                  identity.get("serial", "-"), identity.get("firmware", "-"),
                                  calibration.get("date") or "-", calibration.get("certificate") or "-",
                                  calibration.get("due") or "-", status))
    return rows


def build_certificates(data: RunData, issued: datetime | None = None) -> list[Certificate]:
    """One certificate per meter with accuracy measurements in the run, in position order."""
    run = data.run
    accuracy = [m for m in data.measurements if plan_of(m.get("test", "")) == ACCURACY_PLAN and m.get("meter")]
    meters = {m["serial"]: m for m in run.get("meters", [])}
    instruments = run.get("instruments", {})
    started = run.get("start")
    test_day = datetime.fromisoformat(started).astimezone(UTC).date() if started else None
    instrument_rows = _instrument_rows(run, test_day)
    issued_text = (issued or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    certificates = []
    serials = sorted({m["meter"] for m in accuracy},
                     key=lambda s: (meters.get(s, {}).get("position") or 0, s))
    for serial in serials:
        meter = meters.get(serial, {"serial": serial})
        position = meter.get("position")
        identity = instruments.get(f"meter@{position}", {})
        points, others = [], []
        for m in (m for m in accuracy if m["meter"] == serial):
            details = m.get("details") or {}
            if m["name"] == "error" and "load_point" in details:
                points.append(PointRow(details["load_point"], str(details.get("pf", "-")), details.get("current_a"),
                                       m["value"], m.get("uncertainty"), m.get("low"), m.get("high"),
                                       m["verdict"]))
            else:
                others.append(OtherRow(OTHER_TESTS.get(m["name"], m["name"]), m["value"], m["unit"], m.get("low"),
                                       m.get("high"), m["verdict"]))
        notes = []
        outcomes = run.get("outcomes") or {}
        if outcomes.get("error"):
            notes.append(f"The run reported {outcomes['error']} test(s) the rig could not complete (ERROR); "
                         "points it could not measure do not appear on this certificate.")
        if run.get("bench_broken"):
            notes.append(f"The bench was reported broken: {run['bench_broken']}")
        if any(row.status == "OVERDUE" for row in instrument_rows):
            notes.append("An instrument's calibration was overdue on the test date.")
        if not run.get("end"):
            notes.append("The run record has no end time: the run did not finish normally.")
        certificates.append(Certificate(
            number=f"{data.folder.name}-{serial}", serial=serial, position=position,
            manufacturer=meter.get("manufacturer") or identity.get("manufacturer") or "-",
            model=meter.get("model") or identity.get("model") or "-",
            firmware=meter.get("firmware") or identity.get("firmware") or "-",
            accuracy_class=str(meter.get("accuracy_class", "-")), rating=_rating(meter),
            bench=(run.get("bench") or {}).get("name", "-"), host=run.get("host") or "-",
            git_revision=run.get("git_revision") or "-", test_started=_when(started),
            test_finished=_when(run.get("end")), issued=issued_text, instruments=instrument_rows,
            points=points, others=others, notes=notes))
    return certificates


# -- rendering --------------------------------------------------------------------------------------------


def render_html(certificate: Certificate) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                              undefined=StrictUndefined)
    environment.filters["signed"] = lambda value, digits=3: "-" if value is None else f"{value:+.{digits}f}"
    environment.filters["fixed"] = lambda value, digits=3: "-" if value is None else f"{value:.{digits}f}"
    return environment.get_template("certificate.html").render(c=certificate, decision_rule=DECISION_RULE)


VERDICT_COLOURS = {"pass": "#1e7b34", "marginal": "#a36a00", "fail": "#b3261e"}


def render_pdf(certificate: Certificate, path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=8, leading=10)
    grid = [("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8ecf2")),
            ("FONTSIZE", (0, 0), (-1, -1), 8.5), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]

    def table(rows, widths, verdict_column=None):
        style = list(grid)
        if verdict_column is not None:
            for index, row in enumerate(rows[1:], start=1):
                colour = VERDICT_COLOURS.get(str(row[verdict_column]).lower())
                if colour:
                    style.append(("TEXTCOLOR", (verdict_column, index), (verdict_column, index),
                                  colors.HexColor(colour)))
                    style.append(("FONTNAME", (verdict_column, index), (verdict_column, index), "Helvetica-Bold"))
        result = Table(rows, colWidths=[w * mm for w in widths], repeatRows=1, hAlign="LEFT")
        result.setStyle(TableStyle(style))
        return result

    c = certificate
    story = [Paragraph("Meter accuracy test certificate", styles["Title"]),
             Paragraph(f"Certificate {c.number} &nbsp; issued {c.issued}", small), Spacer(1, 4 * mm),
             Paragraph("Meter under test", styles["Heading3"]),
             table([["Serial", "Position", "Manufacturer", "Model", "Firmware", "Class"],
                    [c.serial, c.position or "-", c.manufacturer, c.model, c.firmware, c.accuracy_class]],
                   [30, 17, 33, 33, 30, 17]),
             Paragraph(f"Rating: {c.rating}", small),
             Paragraph("Bench and reference", styles["Heading3"]),
             Paragraph(f"Bench {c.bench} (host {c.host}, rig revision {c.git_revision}); "
                       f"test {c.test_started} to {c.test_finished}", small),
             table([["Role", "Instrument", "Serial", "Firmware", "Calibrated", "Certificate", "Due", "Status"]] +
                   [[r.role, Paragraph(f"{r.manufacturer} {r.model}", small), r.serial, r.firmware, r.calibrated,
                     Paragraph(r.certificate, small), r.due, r.status] for r in c.instruments],
                   [17, 30, 25, 16, 19, 31, 19, 16]),
             Paragraph("Error at the load points", styles["Heading3"]),
             table([["Load point", "PF", "Current (A)", "Error (%)", "U, k=2 (%)", "Limit (%)", "Verdict"]] +
                   [[p.load_point, p.pf, "-" if p.current_a is None else f"{p.current_a:g}", f"{p.error_pct:+.3f}",
                     "-" if p.uncertainty_pct is None else f"{p.uncertainty_pct:.3f}", p.limit_text,
                     p.verdict.upper()] for p in c.points],
                   [26, 14, 24, 24, 24, 22, 22], verdict_column=6)]
    if c.others:
        story += [Paragraph("Other accuracy tests", styles["Heading3"]),
                  table([["Test", "Value", "Unit", "Limit", "Verdict"]] +
                        [[o.title, f"{o.value:g}", o.unit, o.limit_text, o.verdict.upper()] for o in c.others],
                        [72, 26, 18, 22, 22], verdict_column=4)]
    verdict_colour = VERDICT_COLOURS["fail" if c.verdict == "FAIL" else "pass"]
    story += [Spacer(1, 3 * mm), Paragraph(f"<b>Overall verdict: <font color='{verdict_colour}'>{c.verdict}</font></b>",
                                           body),
              Paragraph(DECISION_RULE, small)]
    story += [Paragraph(note, small) for note in c.notes]
    signatures = Table([["Tested by", "", "Checked by", ""], ["Name", "", "Name", ""], ["Date", "", "Date", ""],
                        ["Signature", "", "Signature", ""]], colWidths=[20 * mm, 60 * mm, 22 * mm, 60 * mm],
                       rowHeights=9 * mm)
    signatures.setStyle(TableStyle([("LINEBELOW", (1, 1), (1, -1), 0.5, colors.black),
                                    ("LINEBELOW", (3, 1), (3, -1), 0.5, colors.black),
                                    ("FONTSIZE", (0, 0), (-1, -1), 8.5), ("VALIGN", (0, 0), (-1, -1), "BOTTOM"),
                                    ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")]))
    story += [Spacer(1, 8 * mm), signatures]
    document = SimpleDocTemplate(str(path), pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=15 * mm,
                                 bottomMargin=15 * mm, title=f"Accuracy certificate {c.serial}",
                                 author="Meter HIL Rig", subject=c.number)
    document.build(story)


def write_certificates(folder: Path, issued: datetime | None = None) -> list[Path]:
    """certificates/<serial>.html and .pdf in the run folder for every meter measured by the accuracy plan."""
    data = read_run(folder)
    written = []
    certificates = build_certificates(data, issued)
    if certificates:
        out = Path(folder) / "certificates"
        out.mkdir(exist_ok=True)
        for certificate in certificates:
            name = re.sub(r"[^A-Za-z0-9._-]", "_", certificate.serial)
            html_path, pdf_path = out / f"{name}.html", out / f"{name}.pdf"
            html_path.write_text(render_html(certificate))
            render_pdf(certificate, pdf_path)
            written += [html_path, pdf_path]
    return written
