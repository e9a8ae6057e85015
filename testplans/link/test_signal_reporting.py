"""Signal reporting: the RSRP the meter (DLMS 0.1.96.12.5.255) and its modem (AT+CESQ, AT+QCSQ) report follows
the set attenuation.

Per position, at each step of the sweep (--link-sweep) where the expected RSRP stays above the registration
loss threshold: expected RSRP = the bench's calibrated cell RSRP at 0 dB (limits `cell_rsrp_dbm`, a bench
figure, not the twin's) - the attenuation the attenuator reads back; every report must lie within
+- `rsrp_tolerance_db`.
"""

from __future__ import annotations

import pytest

from rig.plan import Equals, Limits
from rig.roles import SignalReport

pytestmark = [pytest.mark.link, pytest.mark.together, pytest.mark.feature("Signal reporting")]


def test_reported_rsrp_follows_the_attenuation(pos, link, measure):
    with link.radio(pos) as radio_path:
        signal, link_limits = pos.get(SignalReport), link.limits
        modem = radio_path.modem
        if modem is not None:
            modem.set_technology("4g")
        tolerance = link_limits.rsrp_tolerance_db
        for attenuation_db in link.sweep:
            if link_limits.cell_rsrp_dbm - attenuation_db < link_limits.registration_loss_dbm:
                continue  # no registration, so no RSRP to report
            held_db = radio_path.set_attenuation(attenuation_db)
            expected = Limits.within(link_limits.cell_rsrp_dbm - held_db, tolerance)
            details = {"attenuation_db": held_db, "cell_rsrp_dbm": link_limits.cell_rsrp_dbm}
            measure("meter_reported_rsrp", signal.read_signal_dbm(), "dBm", expected, details=details)
            if modem is None:
                continue
            registered = radio_path.wait_registration(True, link_limits.registration_wait_s)
            if not registered:
                measure("modem_registered", registered, "", Equals(True), details=details)
                continue
            cesq_rsrp, _rsrq = modem.cesq()
            _mode, qcsq = modem.qcsq()
            for name, value in (("modem_cesq_rsrp", cesq_rsrp), ("modem_qcsq_rsrp", qcsq.get("rsrp_dbm"))):
                measure(name, float("nan") if value is None else value, "dBm", expected, details=details)
