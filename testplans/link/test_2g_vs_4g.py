"""2G against 4G: the same reconnect-latency sweep on both technologies, switched through the modem's
AT+QCFG="nwscanmode", showing why a recharge took hours to restore supply on 2G.

Per position with a modem: the sweep (--link-sweep; --link-trials on 4G, --link-2g-trials on 2G, where every
trial waits for the meter's poll) of test_reconnect_latency on 4G, judged by the
SLA (`reconnect_max_s`) at every step up to the last one at which the modem stays registered; then on 2G, judged
by the lab's expectation for 2G (`reconnect_2g_max_s`). Both tables are recorded and plotted together, and at
every step usable on both, 2G's median latency must be at least `min_2g_over_4g_ratio` times 4G's.
"""

from __future__ import annotations

import pytest
from sweep import Sweep, latency_sweep

from rig.plan import Equals, Limits, LoadWatch
from rig.report.attach import attach_latency
from rig.roles import Modem

pytestmark = [pytest.mark.link, pytest.mark.together, pytest.mark.feature("2G against 4G")]


def test_2g_reconnects_far_slower_than_4g(pos, link, measure):
    with link.radio(pos) as radio_path:
        modem, link_limits = pos.get(Modem), link.limits
        link.supply(pos)
        sweeps = [Sweep("4g", link.sweep, link.trials, link_limits.reconnect_max_s, link_limits.trial_timeout_s),
                  Sweep("2g", link.sweep, link.trials_2g, link_limits.reconnect_2g_max_s,
                        link_limits.trial_timeout_2g_s)]
        tables = {}
        with LoadWatch(pos.load, link.plan.load_a, link.plan.poll_s) as watch:
            watch.flowing(link_limits.trial_timeout_s)
            for sweep in sweeps:
                radio_path.set_attenuation(0.0)
                modem.set_technology(sweep.label)
                registered = radio_path.wait_registration(True, link_limits.registration_wait_s)
                if not registered:
                    measure(f"registered_{sweep.label}_at_0_db", registered, "", Equals(True))
                    continue
                tables[sweep.label] = latency_sweep(sweep, pos, link, watch, radio_path, measure)
        rows = [row for table in tables.values() for row in table]
        if rows:
            attach_latency(rows, name=f"reconnect latency 2G against 4G, position {pos.number}")
        fourg = {row["attenuation_db"]: row for row in tables.get("4g", [])}
        for row in tables.get("2g", []):
            if row["attenuation_db"] in fourg:
                ratio = row["median_s"] / fourg[row["attenuation_db"]]["median_s"]
                measure("median_latency_2g_over_4g", ratio, "", Limits(low=link_limits.min_2g_over_4g_ratio),
                        details={"2g": row, "4g": fourg[row["attenuation_db"]]})
