"""2G against 4G: the same reconnect-latency sweep on both technologies, switched through the modem's
AT+QCFG="nwscanmode", showing why a recharge took hours to restore supply on 2G.

Per position with a modem: the sweep (--link-sweep; --link-trials on 4G, --link-2g-trials on 2G, where every
trial waits for the meter's poll) of test_reconnect_latency on 4G, judged by the
SLA (`reconnect_max_s`) at every step up to the last one at which the modem stays registered; then on 2G, judged
by the lab's expectation for 2G (`reconnect_2g_max_s`). Both tables are recorded and plotted together, and at
every step usable on both, 2G's median latency must be at least `min_2g_over_4g_ratio` times 4G's.
"""

from __future__ import annotations

import allure
import pytest
from radio import POLL_S, latency_sweep, supply_position, wait_for_flow

from rig.report.attach import attach_latency
from rig.timing import CurrentWatcher

pytestmark = [pytest.mark.link, allure.epic("4G link"), allure.feature("2G against 4G")]


def test_2g_reconnects_far_slower_than_4g(position, bench, source, hes, measure, radio_path, link_limits,
                                          link_sweep, link_trials, link_2g_trials):
    if radio_path.modem is None:
        pytest.skip(f"position {position.position} has no modem role: its technology cannot be switched")
    account = position.serial
    meter = bench[f"meter@{position.position}"]
    load = bench[f"load@{position.position}"]
    allure.dynamic.parameter("position", f"{position.position} ({account})")
    supply_position(source, load, hes, account, meter, position.un_v, link_limits.trial_timeout_s)
    tables = {}
    with CurrentWatcher.for_load(load, poll_s=POLL_S) as watcher:
        wait_for_flow(watcher, link_limits.trial_timeout_s)
        for technology, limit_s, trials, timeout_s in (
                ("4g", link_limits.reconnect_max_s, link_trials, link_limits.trial_timeout_s),
                ("2g", link_limits.reconnect_2g_max_s, link_2g_trials, link_limits.trial_timeout_2g_s)):
            radio_path.set_attenuation(0.0)
            radio_path.modem.set_technology(technology)
            if not radio_path.wait_registration(True, link_limits.registration_wait_s):
                measure(f"registered_{technology}_at_0_db", 0.0, "", expected=1, tolerance=0,
                        position=position.position)
                continue
            tables[technology] = latency_sweep(technology, position, hes, meter, watcher, radio_path, measure,
                                               link_limits, link_sweep, trials, limit_s, timeout_s)
    rows = [row for table in tables.values() for row in table]
    if rows:
        attach_latency(rows, name=f"reconnect latency 2G against 4G, position {position.position}")
    fourg = {row["attenuation_db"]: row for row in tables.get("4g", [])}
    for row in tables.get("2g", []):
        if row["attenuation_db"] in fourg:
            ratio = row["median_s"] / fourg[row["attenuation_db"]]["median_s"]
            measure("median_latency_2g_over_4g", ratio, "", low=link_limits.min_2g_over_4g_ratio,
                    position=position.position, details={"2g": row, "4g": fourg[row["attenuation_db"]]})
