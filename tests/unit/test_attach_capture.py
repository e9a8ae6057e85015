"""Attachments of a together plan's position thread: captured, plots drawn in a worker process, attached at the
position's replay (rig/report/attach.py)."""

import threading

from rig.report import attach, plots

ROWS = [{"profile": "4g", "attenuation_db": 0.0, "median_s": 0.2, "p95_s": 0.3, "max_s": 0.4},
        {"profile": "4g", "attenuation_db": 40.0, "median_s": 1.2, "p95_s": 1.5, "max_s": 1.9}]


def test_a_captured_plot_is_drawn_meanwhile_and_attached_at_the_replay(monkeypatch):
    attached = []
    monkeypatch.setattr(attach, "attach_png", lambda name, png: attached.append((name, png)))

    def position_thread(calls_out):
        with attach.capture() as calls:
            attach.attach_plot("latency", plots.latency_curve, ROWS)
        calls_out.extend(calls)

    calls = []
    thread = threading.Thread(target=position_thread, args=(calls,))
    thread.start()
    thread.join()
    assert attached == []  # nothing attached by the position's thread
    attach.replay(calls)
    assert attached == [("latency", plots.latency_curve(ROWS))]


def test_outside_a_capture_a_plot_is_attached_at_once(monkeypatch):
    attached = []
    monkeypatch.setattr(attach, "attach_png", lambda name, png: attached.append((name, png)))
    attach.attach_plot("latency", plots.latency_curve, ROWS)
    assert attached == [("latency", plots.latency_curve(ROWS))]
