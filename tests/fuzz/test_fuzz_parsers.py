"""Property: every parser of outside bytes, given valid inputs, mutated ones (truncated, lengths off by one, bytes
flipped, chunks repeated, tokens of the protocol put in) and random bytes, either parses or raises its own clear
error (InstrumentError, ConfigError, the twin's DataError or ApiError, or nothing at all for the twin's servers,
which answer every request); never another exception. Bounded here; bench/fuzz.py runs the long campaign."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from mutations import mutated
from targets import TARGETS, run_case

pytestmark = pytest.mark.xdist_group("fuzz")

EXAMPLES = 500  # for a target of cost 1; a costlier target gets fewer (the whole folder well under a minute)


def examples(cost: int) -> int:
    return max(8, EXAMPLES // cost)


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_parser_parses_or_raises_its_own_error(name, fuzz_context):
    target = TARGETS[name]
    parse = target.make(fuzz_context)

    @settings(max_examples=examples(target.cost), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated(target.seeds, target.engine))
    def parses_or_refuses(data: bytes) -> None:
        crash = run_case(target, parse, data)
        assert crash is None, crash.reproducer()

    parses_or_refuses()


@pytest.mark.parametrize("name", list(TARGETS))
def test_the_valid_seeds_reach_the_parser_without_a_crash(name, fuzz_context):
    target = TARGETS[name]
    parse = target.make(fuzz_context)
    crashes = [crash.reproducer() for seed in target.seeds if (crash := run_case(target, parse, seed))]
    assert crashes == []
