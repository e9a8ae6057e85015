"""The fleet tests' fixture: shards served in the test's process (tests/fleet/fleet_shard.py)."""

import pytest
from fleet_shard import ShardOnThread


@pytest.fixture
def shard_on_thread():
    made: list[ShardOnThread] = []

    def start(with_listener: bool = False, **settings) -> ShardOnThread:
        served = ShardOnThread(**settings)
        made.append(served)
        served.start(with_listener)
        return served

    yield start
    for served in made:
        served.stop()
