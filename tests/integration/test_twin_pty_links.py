"""Served on the bench's own addresses (a foreground `rig sim`), the twin makes the device path a bench names for a
serial instrument a symlink to the pty serving it, as socat's `link=` does: the modems' AT ports and a serial DLMS
meter's HDLC port alike. Stopping the twin removes the links."""

import asyncio
import os

from plan_runner import free_port, write_bench

from rig.config import load_bench
from rig.sim.twin import Twin


def serial_instruments(folder):
    def edit(data):
        position = data["positions"][0]
        position["interface"] = {"driver": "dlms_meter", "resource": str(folder / "ttyTWIN-HDLC-1"),
                                 "settings": {"client": "public"}}
        position["attenuator"] = {"driver": "rcdat", "resource": f"http://127.0.0.1:{free_port()}",
                                  "safe": {"attenuation_db": 0}}
        position["modem"] = {"driver": "at_modem", "resource": f"ASRL{folder / 'ttyTWIN-MODEM-1'}::INSTR"}
    return edit


def test_serial_instruments_are_linked_at_their_device_paths_and_unlinked_at_stop(tmp_path):
    bench = load_bench(write_bench(tmp_path, only_roles=("source",), port=free_port(),
                                   edit=serial_instruments(tmp_path)))
    twin = Twin(bench, tmp_path / "truth.jsonl", ephemeral_ports=False)

    async def serve_and_stop():
        resources = await twin.start()
        links = {role: os.readlink(tmp_path / name) for role, name in
                 (("meter@1", "ttyTWIN-HDLC-1"), ("modem@1", "ttyTWIN-MODEM-1"))}
        await twin.stop()
        return resources, links

    resources, links = asyncio.run(serve_and_stop())
    assert resources["meter@1"].startswith("/dev/pts/") and resources["modem@1"].startswith("/dev/pts/")
    assert links == {"meter@1": resources["meter@1"], "modem@1": resources["modem@1"]}
    assert not (tmp_path / "ttyTWIN-HDLC-1").is_symlink() and not (tmp_path / "ttyTWIN-MODEM-1").is_symlink()


def test_served_on_free_ports_the_twin_links_nothing(tmp_path):
    bench = load_bench(write_bench(tmp_path, only_roles=("source",), edit=serial_instruments(tmp_path)))
    twin = Twin(bench, tmp_path / "truth.jsonl", ephemeral_ports=True)

    async def serve_and_stop():
        resources = await twin.start()
        linked = [name for name in ("ttyTWIN-HDLC-1", "ttyTWIN-MODEM-1") if (tmp_path / name).is_symlink()]
        await twin.stop()
        return resources, linked

    resources, linked = asyncio.run(serve_and_stop())
    assert resources["meter@1"].startswith("/dev/pts/")
    assert linked == []
