"""Signal reporting: the RSRP the meter (DLMS 0.1.96.12.5.255) and its modem (AT+CESQ, AT+QCSQ) report follows
the set attenuation.

Per position, at each step of the sweep (--link-sweep) where the expected RSRP stays above the registration
loss threshold: expected RSRP = the bench's calibrated cell RSRP at 0 dB (limits `cell_rsrp_dbm`, a bench
figure, not the twin's) - the attenuation the attenuator reads back; every report must lie within
+- `rsrp_tolerance_db`.
"""

from __future__ import annotations

import allure
import pytest

pytestmark = [pytest.mark.link, allure.epic("4G link"), allure.feature("Signal reporting")]


def test_reported_rsrp_follows_the_attenuation(position, bench, source, measure, radio_path, link_limits,
                                               link_sweep):
    meter = bench[f"meter@{position.position}"]
    allure.dynamic.parameter("position", f"{position.position} ({position.serial})")
    if radio_path.modem is not None:
        radio_path.modem.set_technology("4g")
    tolerance = link_limits.rsrp_tolerance_db
    for attenuation_db in link_sweep:
        expected = link_limits.cell_rsrp_dbm - attenuation_db
        if expected < link_limits.registration_loss_dbm:
            continue  # no registration, so no RSRP to report
        held_db = radio_path.set_attenuation(attenuation_db)
        expected = link_limits.cell_rsrp_dbm - held_db
        details = {"attenuation_db": held_db, "cell_rsrp_dbm": link_limits.cell_rsrp_dbm}
        measure("meter_reported_rsrp", meter.read_signal_dbm(), "dBm", expected=expected, tolerance=tolerance,
                position=position.position, details=details)
        if radio_path.modem is None:
            continue
        if not radio_path.wait_registration(True, link_limits.registration_wait_s):
            measure("modem_registered", 0.0, "", expected=1, tolerance=0, position=position.position, details=details)
            continue
        cesq_rsrp, _rsrq = radio_path.modem.cesq()
        _mode, qcsq = radio_path.modem.qcsq()
        for name, value in (("modem_cesq_rsrp", cesq_rsrp), ("modem_qcsq_rsrp", qcsq.get("rsrp_dbm"))):
            measure(name, float("nan") if value is None else value, "dBm", expected=expected, tolerance=tolerance,
                    position=position.position, details=details)
