"""Accuracy certificates from a run folder: content, HTML, and a PDF that renders to an image showing the table."""

import json
from datetime import UTC, datetime

import pypdfium2
import pytest

from rig.certificate import build_certificates, plan_of, read_run, write_certificates
from rig.cli import main
from rig.errors import ConfigError
from rig.measure import Limits, Measurement

ISSUED = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
POINTS = [("Ib", "1", 10.0, 0.012, 0.023, 1.0), ("0.5 Ib", "1", 5.0, 1.73, 0.025, 1.0),
          ("0.05 Ib", "1", 0.5, -1.31, 0.04, 1.5), ("Ib", "0.5L", 10.0, 0.2, 0.03, 1.0)]


def write_run(folder, *, calibration_due="2027-01-15", other_plan_only=False):
    folder.mkdir(parents=True)
    run = {"bench": {"name": "lab-2", "path": "/benches/lab-2.yaml"}, "host": "bench-pc", "git_revision": "abc123",
           "start": "2026-03-10T10:00:00+00:00", "end": "2026-03-10T10:40:00+00:00",
           "outcomes": {"passed": 3, "failed": 1, "error": 0, "skipped": 0}, "bench_broken": None,
           "instruments": {
               "reference": {"manufacturer": "Acme", "model": "RS-3", "serial": "R-77", "firmware": "2.1",
                             "calibration": {"date": "2025-01-15", "certificate": "CAL-9", "due": calibration_due}},
               "source": {"manufacturer": "Chroma ATE", "model": "61504", "serial": "S-1", "firmware": "1.10"},
               "meter@2": {"manufacturer": "Meterco", "model": "PM-1", "serial": "M123", "firmware": "4.2.0"}},
           "meters": [{"position": 2, "serial": "M123", "accuracy_class": "1", "firmware": "4.2.0",
                       "manufacturer": "Meterco", "model": "PM-1", "ib_a": 10, "in_a": None, "imax_a": 60,
                       "un_v": 240, "fn_hz": 50, "meter_constant_imp_per_kwh": 3200,
                       "test_output_imp_per_kwh": None}]}
    (folder / "run.json").write_text(json.dumps(run))
    test = "smoke/test_bench_smoke.py::test_x" if other_plan_only else \
        "accuracy/test_accuracy.py::test_error_at_load_point[class1]"
    records = []
    for name, pf, current, value, uncertainty, limit in POINTS:
        limits = Limits(-limit, limit)
        records.append(Measurement(test, "error", value, "%", limits.low, limits.high, limits.verdict(value),
                                   uncertainty, 2, "M123",
                                   details={"load_point": name, "pf": pf, "current_a": current}).as_record())
    records.append(Measurement("accuracy/test_accuracy.py::test_no_load_creep[class1]", "creep_pulses", 0,
                               "pulses", 0, 1, "pass", position=2, meter="M123").as_record())
    (folder / "measurements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_plan_of_names_the_folder_under_testplans_or_the_module():
    assert plan_of("accuracy/test_accuracy.py::test_error_at_load_point[x]") == "accuracy"
    assert plan_of("testplans/prepaid/test_cutoff.py::test_cut") == "prepaid"
    assert plan_of("test_bench_smoke.py::test_source_holds_voltage[230.0]") == "bench_smoke"


def test_certificate_content_per_point_and_overall(tmp_path):
    [certificate] = build_certificates(read_run(write_run(tmp_path / "run")), ISSUED)
    assert (certificate.serial, certificate.firmware, certificate.manufacturer) == ("M123", "4.2.0", "Meterco")
    assert certificate.rating == "Ib 10 A, Imax 60 A, Un 240 V, 50 Hz, 3200 imp/kWh"
    assert [(p.load_point, p.pf, p.verdict, p.limit_text) for p in certificate.points] == [
        ("Ib", "1", "pass", "±1"), ("0.5 Ib", "1", "fail", "±1"), ("0.05 Ib", "1", "pass", "±1.5"),
        ("Ib", "0.5L", "pass", "±1")]
    assert certificate.verdict == "FAIL"
    assert [(o.title, o.verdict) for o in certificate.others] == [
        ("No-load creep: pulses at 1.1 Un, no current", "pass")]
    reference = certificate.instruments[0]
    assert (reference.role, reference.serial, reference.calibrated, reference.certificate, reference.status) == (
        "reference", "R-77", "2025-01-15", "CAL-9", "valid")
    assert certificate.instruments[1].status == "not given"


def test_overdue_calibration_is_flagged(tmp_path):
    [certificate] = build_certificates(read_run(write_run(tmp_path / "run", calibration_due="2026-03-01")), ISSUED)
    assert certificate.instruments[0].status == "OVERDUE"
    assert any("overdue" in note for note in certificate.notes)


def test_html_holds_identity_points_and_signature_lines(tmp_path):
    folder = write_run(tmp_path / "run")
    write_certificates(folder, ISSUED)
    html = (folder / "certificates" / "M123.html").read_text()
    assert "<td>M123</td>" in html and "<td>4.2.0</td>" in html and "CAL-9" in html
    assert '<td class="num">+1.730</td><td class="num">0.025</td>' in html
    assert html.count('<td class="fail">FAIL</td>') == 1 and html.count('<td class="pass">PASS</td>') == 4
    assert "Overall verdict" in html and html.count('class="line"') == 6


def _dark_rows(image, top, bottom, left, right):
    """Pixel rows between top and bottom that are mostly dark across [left, right): the table's rules."""
    gray = image.convert("L")
    rules = []
    for y in range(top, bottom):
        dark = sum(1 for x in range(left, right, 2) if gray.getpixel((x, y)) < 200)
        if dark > 0.8 * len(range(left, right, 2)):
            if not rules or y - rules[-1][-1] > 1:
                rules.append([y])
            else:
                rules[-1].append(y)
    return rules


def test_pdf_renders_to_an_image_showing_the_table(tmp_path):
    folder = write_run(tmp_path / "run")
    write_certificates(folder, ISSUED)
    document = pypdfium2.PdfDocument(folder / "certificates" / "M123.pdf")
    page = document[0]
    text_page = page.get_textpage()
    text = text_page.get_text_range()
    for expected in ("M123", "0.5 Ib", "+1.730", "0.025", "FAIL", "Overall verdict: FAIL", "CAL-9", "Tested by",
                     "Checked by"):
        assert expected in text, expected
    scale = 2
    image = page.render(scale=scale).to_pil()
    image.save(tmp_path / "certificate.png")
    _, page_height = page.get_size()

    def top_of(phrase):  # image row of the phrase's top edge
        searcher = text_page.search(phrase)
        index, _ = searcher.get_next()
        return round((page_height - text_page.get_charbox(index)[3]) * scale)

    header, end = top_of("Load point"), top_of("Other accuracy tests")
    width = image.size[0]
    rules = _dark_rows(image, header - 20, end, width // 6, width // 2)
    assert len(rules) == len(POINTS) + 2, rules  # above and below the header row, and below every point's row
    cells = image.convert("L").crop((width // 10, header, width * 9 // 10, rules[-1][0]))
    dark_share = sum(cells.histogram()[:128]) / (cells.size[0] * cells.size[1])
    assert dark_share > 0.03  # the numbers are drawn, not an empty grid
    document.close()


def test_cli_writes_certificates_and_says_when_there_is_nothing_to_certify(tmp_path, capsys):
    folder = write_run(tmp_path / "run")
    assert main(["certificate", str(folder)]) == 0
    assert capsys.readouterr().out.split() == [str(folder / "certificates" / "M123.html"),
                                               str(folder / "certificates" / "M123.pdf")]
    smoke = write_run(tmp_path / "smoke", other_plan_only=True)
    (smoke / "measurements.jsonl").write_text("")
    assert main(["certificate", str(smoke)]) == 1
    assert "no accuracy measurements" in capsys.readouterr().err
    assert not (smoke / "certificates").exists()


def test_a_folder_without_run_json_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not a run folder"):
        read_run(tmp_path)
    assert main(["certificate", str(tmp_path)]) == 2
