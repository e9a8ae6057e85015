"""The twin's radio link model (rig/sim/link.py): signal formulas, registration with hysteresis and re-attach,
the latency and loss curves, and deliveries in order through outages."""

import asyncio
import math
import random

import pytest

from rig.sim.defects import LinkDefects
from rig.sim.link import DEFAULT_PROFILES, LinkSettings, RadioLink
from rig.sim.truth import TruthLog


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make_link(defects: LinkDefects | None = None, technology: str = "4g", clock=None, **settings) -> RadioLink:
    return RadioLink(1, LinkSettings(technology=technology, **settings), defects or LinkDefects(), TruthLog(None),
                     random.Random(1), clock or Clock())


@pytest.mark.parametrize(("attenuation_db", "rsrp", "sinr", "rsrq"), [
    (0.0, -70.0, 25.0, -10.8),      # SINR capped; RSRQ at its best
    (40.0, -110.0, 8.0, -12.0),     # SINR = RSRP - noise floor (-118): 8 dB, 2 dB below 10: -10.8 - 1.2
    (60.0, -130.0, -12.0, -19.5),   # RSRQ floors at -19.5 dB
])
def test_signal_follows_the_attenuation(attenuation_db, rsrp, sinr, rsrq):
    link = make_link()
    link.set_attenuation(attenuation_db, by="test")
    signal = link.signal()
    assert (signal.rsrp_dbm, signal.sinr_db, signal.rsrq_db) == (rsrp, sinr, pytest.approx(rsrq))
    assert signal.rssi_dbm == pytest.approx(rsrp + 10 * math.log10(600))


def test_the_reported_signal_carries_the_offset_defect():
    link = make_link(LinkDefects(rsrp_report_offset_db=8))
    link.set_attenuation(30, by="test")
    assert (link.signal().rsrp_dbm, link.reported_signal().rsrp_dbm) == (-100.0, -92.0)


def test_registration_is_lost_below_the_threshold_and_regained_with_hysteresis_after_the_reattach():
    clock = Clock()
    link = make_link(clock=clock)
    link.set_attenuation(50, by="test")  # -120 dBm: at the threshold, still registered
    assert link.update() and link.outages == 0
    link.set_attenuation(50.25, by="test")  # -120.25 dBm: lost
    assert not link.update() and link.outages == 1
    link.set_attenuation(48, by="test")  # -118 dBm: above the threshold, inside the 3 dB hysteresis
    clock.t += 10
    assert not link.update()
    link.set_attenuation(47, by="test")  # -117 dBm: threshold + hysteresis: re-attach starts
    clock.t += 0.99
    assert not link.update()
    clock.t += 0.02  # the 4G profile re-attaches after 1 s
    assert link.update() and link.outages == 1


def test_a_signal_that_falls_back_during_the_reattach_cancels_it():
    clock = Clock()
    link = make_link(clock=clock)
    link.set_attenuation(60, by="test")
    link.set_attenuation(0, by="test")
    clock.t += 0.5
    link.set_attenuation(49, by="test")  # -119 dBm: inside the hysteresis again
    clock.t += 5
    assert not link.update()


@pytest.mark.parametrize(("attenuation_db", "latency_s"), [(0, 0.1), (30, 0.1), (38, 0.2), (46, 0.4), (48, 0.4757)])
def test_4g_latency_doubles_every_8_db_below_the_knee(attenuation_db, latency_s):
    link = make_link()
    link.set_attenuation(attenuation_db, by="test")
    assert link.latency_s() == pytest.approx(latency_s, rel=1e-3)
    assert link.loss_probability() == 0.0  # 4G loses nothing while registered


@pytest.mark.parametrize(("attenuation_db", "loss"), [(25, 0.0), (30, 0.25 * (5 / 15) ** 2), (40, 0.25)])
def test_2g_loss_grows_towards_its_threshold(attenuation_db, loss):
    link = make_link(technology="2g")
    link.set_attenuation(attenuation_db, by="test")
    assert link.loss_probability() == pytest.approx(loss)
    assert link.latency_s() == pytest.approx(0.5 * 2 ** (max(0, attenuation_db - 25) / 5))  # knee -95 dBm


def test_defects_add_latency_and_loss():
    link = make_link(LinkDefects(extra_latency_s=2.0, drop_rate=0.3))
    assert link.latency_s() == pytest.approx(2.1)
    assert link.loss_probability() == pytest.approx(0.3)


def test_default_profiles_scale_the_field_1_to_60():
    assert DEFAULT_PROFILES["2g"].poll_interval_s == 15.0  # a 15-minute poll
    assert DEFAULT_PROFILES["4g"].retry_after_s == 1.0  # a 60 s head-end retry
    with pytest.raises(ValueError, match="no link profile '5g'"):
        make_link().set_technology("5g", by="test")


def test_deliveries_wait_out_an_outage_in_order_and_say_so():
    async def scenario():
        loop = asyncio.get_running_loop()
        link = make_link(clock=loop.time)
        link.set_attenuation(60, by="test")
        order = []

        async def send(what):
            delivery = await link.deliver(what)
            order.append((what, delivery.waited_for_registration, delivery.attempts))

        tasks = [loop.create_task(send(what)) for what in ("first", "second")]
        await asyncio.sleep(0.3)
        assert order == []
        restored = loop.time()
        link.set_attenuation(0, by="test")
        await asyncio.gather(*tasks)
        elapsed = loop.time() - restored
        fresh = await link.deliver("third")
        return order, elapsed, fresh

    order, elapsed, fresh = asyncio.run(scenario())
    assert order == [("first", True, 1), ("second", True, 1)]  # the second waited in line behind the outage too
    assert 1.0 + 0.2 <= elapsed < 1.5  # 1 s re-attach, then two deliveries of 0.1 s
    assert (fresh.waited_for_registration, fresh.attempts) == (False, 1)


def test_a_lost_delivery_is_retried_after_the_head_ends_timeout():
    async def scenario():
        loop = asyncio.get_running_loop()
        link = make_link(LinkDefects(drop_rate=1.0), clock=loop.time)
        task = loop.create_task(link.deliver("doomed"))
        await asyncio.sleep(2.15)  # attempts ending at 0.1 and 1.2 s lost; the third starts at 2.2 s
        link.defects = LinkDefects()
        return await task

    delivery = asyncio.run(scenario())
    assert delivery.attempts == 3 and not delivery.waited_for_registration


def test_a_lost_2g_session_is_retried_at_the_next_poll():
    """The meter calls in every poll interval; a session lost goes again at the first poll after the head end's
    timeout: one poll later, not two."""
    profile = DEFAULT_PROFILES["2g"].model_copy(update={"poll_interval_s": 1.0, "retry_after_s": 0.2,
                                                        "base_latency_s": 0.05})

    async def scenario():
        loop = asyncio.get_running_loop()
        link = make_link(LinkDefects(drop_rate=1.0), technology="2g", clock=loop.time, profiles={"2g": profile})
        link._poll_phase_s = 0.0
        task = loop.create_task(link.deliver("lost once"))
        started = loop.time()
        first_poll = math.floor(started) + 1.0
        await asyncio.sleep(first_poll + 0.5 - started)  # the session at the first poll is lost
        link.defects = LinkDefects()
        delivery = await task
        return delivery, loop.time() - first_poll

    delivery, after_first_poll_s = asyncio.run(scenario())
    assert delivery.attempts == 2
    assert 1.0 <= after_first_poll_s < 1.5  # the next poll (1 s on) carried it, plus the exchange's latency
