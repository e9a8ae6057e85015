"""A DLMS meter role whose resource is a serial device path: the twin serves the meter's HDLC port on a pty and
advertises its path; the rig reads the energy register over it through the normal bench path, as the meter
reader (LLS)."""

from plan_runner import SIM_BENCH, write_bench
from twin_thread import TwinOnThread

from rig.bench import Bench
from rig.config import load_bench
from rig.transcript import Transcript

PASSWORD_FILE = SIM_BENCH.parent / "sim-lls-password"


def meter_on_a_serial_port(data):
    data["positions"][0]["interface"] = {"driver": "dlms_meter", "resource": "/dev/ttyTWIN-HDLC-1",
                                         "settings": {"client": "reader", "deadline_s": 3},
                                         "secrets": {"lls_password": {"file": str(PASSWORD_FILE)}}}
    data["twin"]["instruments"]["meter@1"] = {"energy_scaler": -3}


def test_energy_register_read_over_the_twins_hdlc_pty(tmp_path):
    twin = TwinOnThread()
    bench_file = load_bench(write_bench(tmp_path, only_roles=("source",), edit=meter_on_a_serial_port))
    resources = twin.start_twin(bench_file, tmp_path / "truth.jsonl")
    transcript = Transcript(tmp_path / "transcript.jsonl")
    bench = Bench(bench_file, transcript, resources)
    try:
        assert resources["meter@1"].startswith("/dev/pts/")
        bench.open()
        assert bench.role_config("meter@1").resource == resources["meter@1"]
        assert bench.identities["meter@1"].serial == "SIM0001"

        def set_register():
            twin.model.meter(1).register_energy_wh = 1234.567
        twin.call(set_register)
        assert bench["meter@1"].read_energy_import_kwh() == 1.234567
    finally:
        bench.close()
        transcript.close()
        twin.stop_twin()
    assert f'"note": "opened {resources["meter@1"]} client 32' in (tmp_path / "transcript.jsonl").read_text()
