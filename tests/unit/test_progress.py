"""Progress of long points: status text, the plain-line rate limit for CI logs, the self-erasing TTY line."""

import pytest

from rig import progress
from rig.progress import PlainLines, Status, StatusLine, format_duration, plain_output_wanted


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.mark.parametrize(("seconds", "text"), [(0.42, "0.4 s"), (9.96, "10.0 s"), (12.4, "12 s"),
                                               (125, "2 min 05 s"), (3720, "1 h 02 min"), (None, "?"), (-3, "0.0 s")])
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_status_text_counts_done_of_needed_and_time_left():
    assert Status("position 2", 812, 1346, "pulses", 1.43).text() == \
        "position 2: 812 of 1346 pulses (60 %), 1.4 s left"
    assert Status("no-load creep", 12.5, 40, "s", 27.5).text() == "no-load creep: 12.5 of 40 s (31 %), 28 s left"


def test_plain_lines_at_most_one_per_interval_and_none_for_a_short_wait():
    clock, lines = FakeClock(), []
    sink = PlainLines(lines.append, interval_s=10, clock=clock, prefix=lambda: "test[Ib]  ")
    for _ in range(38):  # a 9.5 s wait, updated every 0.25 s
        sink.show(Status("position 1", 1, 10, "pulses", 3))
        clock.sleep(0.25)
    sink.clear()
    assert lines == []
    for step in range(140):  # a 35 s wait
        sink.show(Status("position 1", step, 140, "pulses", (140 - step) * 0.25))
        clock.sleep(0.25)
    assert lines == ["test[Ib]  position 1: 40 of 140 pulses (29 %), 25 s left",
                     "test[Ib]  position 1: 80 of 140 pulses (57 %), 15 s left",
                     "test[Ib]  position 1: 120 of 140 pulses (86 %), 5.0 s left"]


def test_status_line_draws_below_redraws_in_place_and_erases_back_to_the_writers_column():
    clock, written = FakeClock(), []
    sink = StatusLine(written.append, width=lambda: 60, column_of_writer=lambda: 7, redraw_s=0.2, clock=clock)
    sink.show(Status("position 1", 1, 10, "pulses", 2))
    clock.sleep(0.125)
    sink.show(Status("position 1", 2, 10, "pulses", 1.8))  # within 0.2 s: not redrawn
    clock.sleep(0.125)
    sink.show(Status("position 1", 3, 10, "pulses", 1.6))
    sink.clear()
    sink.clear()  # nothing shown any more: nothing written
    assert written == ["\n\rposition 1: 1 of 10 pulses (10 %), 2.0 s left\x1b[K",
                       "\rposition 1: 3 of 10 pulses (30 %), 1.6 s left\x1b[K",
                       "\r\x1b[K\x1b[1A\r\x1b[7C"]


def test_status_line_is_cut_to_the_terminal_width():
    written = []
    sink = StatusLine(written.append, width=lambda: 24, column_of_writer=lambda: 0)
    sink.show(Status("position 12", 100, 2000, "pulses", 30))
    assert written == ["\n\rposition 12: 100 of ...\x1b[K"]
    sink.clear()
    assert written[-1] == "\r\x1b[K\x1b[1A\r"  # column 0: no cursor move forward


def test_wait_reports_seconds_and_clears_at_the_end():
    clock, events = FakeClock(), []

    class Recorder:
        def show(self, status):
            events.append(status.text())

        def clear(self):
            events.append("clear")

    progress.install(Recorder())
    try:
        progress.wait(1.0, "starting current", step_s=0.4, clock=clock, sleep=clock.sleep)
    finally:
        progress.install(None)
    assert events == ["starting current: 0 of 1 s (0 %), 1.0 s left",
                      "starting current: 0.4 of 1 s (40 %), 0.6 s left",
                      "starting current: 0.8 of 1 s (80 %), 0.2 s left", "clear"]
    assert clock.now == pytest.approx(101.0)


def test_plain_output_on_pipes_in_ci_and_dumb_terminals():
    assert plain_output_wanted(False, {})
    assert plain_output_wanted(True, {"CI": "true"})
    assert plain_output_wanted(True, {"TERM": "dumb"})
    assert not plain_output_wanted(True, {"TERM": "xterm-256color"})


def test_positions_running_together_show_as_one_status_naming_the_slowest():
    shown = []

    class Sink:
        def show(self, status):
            shown.append(status.text())

        def clear(self):
            shown.append("cleared")

    progress.install(Sink())
    try:
        progress.begin_positions("test_cutoff", 3)
        progress.running_position(1)
        progress.update("waiting for the current to fall (cut)", 2, 20, "s", 18)
        progress.running_position(2)
        progress.update("waiting for the current to fall (cut)", 1, 30, "s", 29)
        progress.done()  # position 2's wait is over: position 1 is the slowest again
        progress.position_finished(2)
        progress.running_position(1)
        progress.done()
        progress.position_finished(1)
        progress.end_positions()
    finally:
        progress.running_position(None)
        progress.install(None)
    assert shown == [
        "test_cutoff: 0 of 3 positions done; slowest: position 1, waiting for the current to fall (cut): "
        "2 of 20 s (10 %), 18 s left",
        "test_cutoff: 0 of 3 positions done; slowest: position 2, waiting for the current to fall (cut): "
        "1 of 30 s (3 %), 29 s left",
        "test_cutoff: 1 of 3 positions done; slowest: position 1, waiting for the current to fall (cut): "
        "2 of 20 s (10 %), 18 s left",
        "test_cutoff: 2 of 3 positions done (67 %)",
        "cleared"]
