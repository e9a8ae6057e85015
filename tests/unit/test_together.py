"""Shared steps of positions running together: once, together, leaving, a deadlock named, an interrupt."""

import threading

import pytest

from rig.plan import shared


def run_positions(group: shared.Group, body, timeout_s: float = 10.0) -> dict[int, object]:
    """body(number) for every position of group, each in its own thread as the plugin runs them; result or error."""
    outcomes: dict[int, object] = {}

    def position(number: int) -> None:
        shared.enter(group, number)
        try:
            outcomes[number] = body(number)
        except BaseException as exc:  # noqa: BLE001 - kept for the assertion
            outcomes[number] = exc
        finally:
            group.leave(number)

    threads = [threading.Thread(target=position, args=(n,), daemon=True) for n in group.numbers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
        assert not thread.is_alive(), "a position never ended"
    return outcomes


def test_once_runs_the_action_once_and_every_position_gets_its_result():
    group, calls = shared.Group("plan", [1, 2, 3]), []

    def body(number):
        return shared.once("supply on", lambda: calls.append(number) or f"switched by {number}")

    outcomes = run_positions(group, body)
    assert len(calls) == 1
    assert set(outcomes.values()) == {f"switched by {calls[0]}"}


def test_together_waits_for_every_running_position():
    group, arrived, seen_at_run = shared.Group("plan", [1, 2, 3]), [], []
    released = threading.Event()

    def body(number):
        if number == 3:
            released.wait(5)  # the last one comes late: the step must wait for it
        arrived.append(number)
        return shared.together("clock", lambda: seen_at_run.extend(arrived) or "moved")

    def release_later():
        released.set()

    threading.Timer(0.2, release_later).start()
    outcomes = run_positions(group, body)
    assert outcomes == {1: "moved", 2: "moved", 3: "moved"}
    assert sorted(seen_at_run) == [1, 2, 3]


def test_a_position_that_ends_is_not_waited_for():
    group = shared.Group("plan", [1, 2])

    def body(number):
        if number == 1:
            raise AssertionError("position 1 failed before the shared step")
        return shared.together("clock", lambda: "moved")

    outcomes = run_positions(group, body)
    assert isinstance(outcomes[1], AssertionError) and outcomes[2] == "moved"


def test_the_nth_call_meets_the_others_nth_call():
    group, runs = shared.Group("plan", [1, 2]), []

    def body(number):
        return [shared.together("step", lambda k=k: runs.append(k) or k) for k in range(3)]

    outcomes = run_positions(group, body)
    assert outcomes == {1: [0, 1, 2], 2: [0, 1, 2]} and runs == [0, 1, 2]


def test_positions_waiting_at_different_steps_are_told_where_each_waits():
    group = shared.Group("plan", [1, 2])

    def body(number):
        return shared.together(f"step only position {number} takes", lambda: "never")

    outcomes = run_positions(group, body)
    for number in (1, 2):
        assert isinstance(outcomes[number], shared.SharedStepError)
    message = str(outcomes[1])
    assert "position 1 at 'step only position 1 takes #1'" in message
    assert "position 2 at 'step only position 2 takes #1'" in message


def test_a_failing_shared_step_fails_every_position_with_its_cause():
    group = shared.Group("plan", [1, 2])

    def fail():
        raise OSError("source did not answer")

    outcomes = run_positions(group, lambda n: shared.together("supply off", fail))
    for number in (1, 2):
        assert isinstance(outcomes[number], shared.SharedStepError)
        assert isinstance(outcomes[number].__cause__, OSError)


def test_a_stopped_group_ends_the_waits():
    group = shared.Group("plan", [1, 2])
    waiting, ended = threading.Event(), threading.Event()

    def body(number):
        if number == 2:  # stops the run while position 1 waits for it, and stays in the group
            waiting.wait(5)
            group.stop.set()
            ended.wait(5)
            return "stopped the run"
        waiting.set()
        try:
            return shared.together("clock", lambda: "never")
        finally:
            ended.set()

    outcomes = run_positions(group, body)
    assert isinstance(outcomes[1], shared.Interrupted)


def test_outside_a_group_the_action_just_runs():
    assert shared.once("x", lambda: 1) == 1
    assert shared.together("y", lambda: 2) == 2


def test_check_stopping_is_quiet_unless_stopping():
    shared.check_stopping("a wait")
    group = shared.Group("plan", [1])
    group.stop.set()
    outcome = run_positions(group, lambda n: shared.check_stopping("a wait"))
    assert isinstance(outcome[1], shared.Interrupted)
    with pytest.raises(shared.Interrupted):
        shared.enter(group, 1)
        try:
            shared.check_stopping("a wait")
        finally:
            shared._context.group = None


def test_for_each_runs_every_position_at_once_and_raises_the_first_failure_after_all_ended():
    started, ended = threading.Barrier(3, timeout=5), []

    def action(number):
        started.wait()  # all three must be running at the same time to pass the barrier
        ended.append(number)
        return number * 10

    assert shared.for_each([1, 2, 3], action) == [10, 20, 30]

    def failing(number):
        if number == 2:
            raise OSError("load@2 did not answer")
        ended.append(number)

    ended.clear()
    with pytest.raises(OSError, match="load@2"):
        shared.for_each([1, 2, 3], failing)
    assert sorted(ended) == [1, 3]
