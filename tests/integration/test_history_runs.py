"""Two runs of one accuracy point on the twin: each leaves certificates, both land in one history database, and
`rig history --meter SIM0001` shows both and draws them; on a terminal the point's progress shows and is erased."""

import os
import pty
import re
import select
import subprocess
import sys
import time

import pypdfium2
import pytest
from plan_runner import PLANS, write_bench

# timing-sensitive (accuracy figures of the good twin): `make test` runs these alone
pytestmark = pytest.mark.serial

ACCURACY = PLANS / "accuracy"
ONE_POINT = "load_point and 240V-Ib-PF1"


def test_two_runs_land_in_one_history_with_certificates(run_plan, tmp_path):
    bench = write_bench(tmp_path)
    results = tmp_path / "results"
    folders = [results / "first", results / "second"]
    for folder in folders:  # the later --results wins: both runs share results/ and so its history.sqlite
        run = run_plan(ACCURACY, bench, "-k", ONE_POINT, f"--results={folder}")
        assert run.wait(timeout_s=120) == 0, run.output
        assert f"history: {results / 'history.sqlite'}" in run.output
        pdf = pypdfium2.PdfDocument(folder / "certificates" / "SIM0001.pdf")
        text = pdf[0].get_textpage().get_text_range()
        assert "SIM0001" in text and re.search(r"Ib 1 10 [+-]0\.\d{3} 0\.\d{3} ±1 PASS", text), text
        pdf.close()
        assert sorted(p.name for p in (folder / "certificates").iterdir()) == [
            f"SIM000{n}.{ext}" for n in (1, 2, 3) for ext in ("html", "pdf")]

    plot = tmp_path / "sim0001.png"
    shown = subprocess.run([sys.executable, "-m", "rig.cli", "history", "--db", str(results / "history.sqlite"),
                            "--meter", "SIM0001", "--point", "Ib", "--pf", "1", "--plot", str(plot)],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "error at Ib PF 1 [%] meter SIM0001"
    runs = [line.split() for line in lines[2:4]]
    assert [row[0] for row in runs] == ["1", "2"] and all(row[3] == "1.0.0" and row[-1] == "PASS" for row in runs)
    assert all(abs(float(row[5])) < 0.05 and 0 < float(row[6]) < 0.1 for row in runs)  # good twin
    assert plot.read_bytes()[:4] == b"\x89PNG" and plot.stat().st_size > 10_000


def test_progress_on_a_terminal_is_drawn_and_erased_before_pytest_reports(tmp_path):
    bench = write_bench(tmp_path)
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"TERM": "xterm", "COLUMNS": "160"}
    process = subprocess.Popen([sys.executable, "-m", "pytest", str(ACCURACY), f"--bench={bench}",
                                f"--results={tmp_path / 'results' / 'tty'}", "-p", "no:cacheprovider", "-q",
                                "-k", ONE_POINT], stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary,
                               cwd=tmp_path, env=env)
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=10)
    os.close(primary)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    status = re.search(r"\n\rtest_error_at_load_point\[class1-10-60A-240V-Ib-PF1\]  position \d: \d+ of \d+ pulses "
                       r"\(\d+ %\), [\d.]+ s left\x1b\[K", text)
    assert status, text
    erase = "\r\x1b[K\x1b[1A\r"
    drawn, erased = text.index(erase, status.end()) + len(erase), text.rindex(erase)
    assert text[status.start():drawn].count("\n") == 1  # redrawn in place, one line
    assert text[erased + len(erase):].lstrip("\x1b[0123456789;m").startswith(".")  # then pytest's mark
