"""Fuzzing: one context (the twin on a thread, drivers on loopback peers) shared by the fuzz tests of a worker."""

from __future__ import annotations

import pytest
from targets import FuzzContext


@pytest.fixture(scope="session")
def fuzz_context(tmp_path_factory):
    context = FuzzContext(tmp_path_factory.mktemp("fuzz"))
    yield context
    context.close()
