"""Transcript: one JSON line per exchange, secrets redacted."""

import json

import pytest

from rig.transcript import Transcript


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def path(tmp_path):
    return tmp_path / "transcript.jsonl"


@pytest.fixture
def transcript(path):
    """A transcript writing to path; each test closes it."""
    return Transcript(path)


def test_records_are_json_lines_with_time_role_sent_received(transcript, path):
    transcript.record("source", "*IDN?", "Chroma ATE,61504,X,1.10", t_mono=12.5)
    transcript.record("source", "OUTP OFF", None, t_mono=13.0)
    transcript.close()
    assert read(path) == [
        {"t_mono": 12.5, "role": "source", "sent": "*IDN?", "received": "Chroma ATE,61504,X,1.10"},
        {"t_mono": 13.0, "role": "source", "sent": "OUTP OFF", "received": None},
    ]


def test_time_defaults_to_monotonic_clock(transcript, path):
    transcript.record("source", "*OPC?", "1")
    transcript.close()
    assert isinstance(read(path)[0]["t_mono"], float)


def test_note_is_recorded(transcript, path):
    transcript.record("bench", None, None, t_mono=1.0, note="safe state (end of run): ok")
    transcript.close()
    assert read(path)[0]["note"] == "safe state (end of run): ok"


def test_transcript_appends_to_existing_file(tmp_path):
    path = tmp_path / "transcript.jsonl"
    for sent in ("A", "B"):
        transcript = Transcript(path)
        transcript.record("source", sent, None, t_mono=0.0)
        transcript.close()
    assert [entry["sent"] for entry in read(path)] == ["A", "B"]


def test_secret_is_replaced_everywhere(transcript, path):
    transcript.add_secret("hunter22")
    transcript.record("meter", "AUTH hunter22", "echo xxhunter22yy", t_mono=0.0, note="pw hunter22")
    transcript.close()
    assert "hunter22" not in path.read_text()
    entry = read(path)[0]
    assert (entry["sent"], entry["received"], entry["note"]) == ("AUTH ***", "echo xx***yy", "pw ***")


def test_longer_secret_is_redacted_before_its_prefix(transcript, path):
    transcript.add_secret("abc1")
    transcript.add_secret("abc12345")
    transcript.record("meter", "K abc12345 / abc1", None, t_mono=0.0)
    transcript.close()
    assert read(path)[0]["sent"] == "K *** / ***"


def test_secret_added_after_earlier_records_redacts_later_ones(transcript, path):
    transcript.record("meter", "hello", None, t_mono=0.0)
    transcript.add_secret("topsecret")
    transcript.record("meter", "PASS topsecret", None, t_mono=1.0)
    transcript.close()
    assert [entry["sent"] for entry in read(path)] == ["hello", "PASS ***"]


def test_empty_secret_is_ignored(transcript, path):
    transcript.add_secret("")
    transcript.record("meter", "abc", None, t_mono=0.0)
    transcript.close()
    assert read(path)[0]["sent"] == "abc"


@pytest.mark.parametrize("secret", ['pa"ss1234', "pässwört1"])
def test_secret_with_characters_json_escapes_is_redacted(transcript, path, secret):
    transcript.add_secret(secret)
    transcript.record("meter", f"LOGIN {secret}", None, t_mono=0.0)
    transcript.close()
    assert read(path)[0]["sent"] == "LOGIN ***"


def test_transcript_without_path_records_nothing(tmp_path):
    transcript = Transcript(None)
    transcript.add_secret("x1234567")
    transcript.record("source", "*IDN?", "x1234567", t_mono=0.0, note="n")
    transcript.close()
    transcript.close()
    assert list(tmp_path.iterdir()) == []
