"""The whole default run (`rig run`, every plan on benches/sim.yaml) against its physics floor, plan by plan.

Runs `rig run --results FOLDER` as a user would (or reads a finished run folder with --results-from), takes each
plan's (test module's) time from the run's Allure results (the sum of its tests' start-stop; a plan whose positions
run together holds the group's time in its first test) and puts beside it the plan's floor: the time its physics
cannot avoid, computed from the plans' own data files, the bench file and the twin's own settings (a twin built
from the bench file, not started: the HES read interval and command retry, the meters' limiter duration and boot
time, the radio link profiles of rig/sim/link.py at each sweep step) and the plans' option defaults (sweep, trials,
limits profiles: testplans/conftest.py, as `rig run` runs them). Prints a table (plan, time, floor, ratio; the
plans with the most seconds above their floor first), with --explain every floor's terms, and as the last line

    suite_floor ratio=<x> suite_s=<a> floor_s=<b>

suite_s is the whole run's wall time (run.json start to end: collection, the twin's start, safe state and the time
between tests included, as a user waits for it), floor_s the sum of the plans' floors. Target: ratio <= 1.25. No
pass/fail. Run from the project root:

    python bench/suite_floor.py [--results FOLDER | --results-from FOLDER] [--bench benches/sim.yaml] [--explain]

What each floor counts (positions that run together count once: the slowest position's floor; "a delivery" is
one exchange carried by the position's radio link: rig/sim/link.py's latency at the step's RSRP, 0 dB unless a
plan sets a step; the table's session row, the run's wall time outside every test, has no floor):
- accuracy: per load point the sources' settle_s (the larger of source and current) and the pulse window,
  max(min_window_s, min_pulses pulse periods at the point's power, the slowest position); starting current:
  settle_s and the pulses' theoretical duration; creep: settle_s and the standard's minimum time; register:
  rest (or settle_s), the dosage duration, rest again.
- prepaid: every plan's supply check (one on-demand read, a delivery) and every credit setting (a read); credit
  and emergency credit windows, alert step_s per threshold, friendly hours credit_s + hold_s + lead_s (the second
  lead: the cut may only come lead_s after the clock moves to before the window's end; the first lead lies inside
  credit_s), the limiter's hold below (duration + tolerance) and its trip (duration), power cycle off_min_s and
  power_cycle_hold_s, group guard hold_s; the HES noticing a fact at its next meter read (read_interval_s / 2: the
  expected wait for a random phase, the minimum being 0; the read's own delivery precedes its sample so it is not
  added); a disconnect or reconnect delivery; restoring (a reconnect delivery when the plan left the meter cut,
  and the restore's read). A reconnect pending at a power loss: its first attempt fails at a delivery, the HES
  retries every command_retry_s (plus a delivery) until the meter has booted (boot_s after the supply returns).
- link: per sweep step usable on 4G (the twin's registration at the step), per trial a cut delivery at 0 dB (the
  sweep sets its trials' cuts up at the best signal) and a reconnect delivery at the step's latency; 2G: one poll
  interval per delivery after the first (each trial's reconnect and the next cut are queued only after the previous
  delivery, so each waits for a poll) plus the last latency, the first delivery's wait for the meter's poll, and for
  every command delivery lost (link.lost) the retry wait up to the next poll after it, both as the run's twin truth
  shows them at the slowest position (without a truth file: half an interval and the expected losses at each step);
  group reconnect: a cut and a reconnect delivery at 0 dB and at the deepest step every position stays registered
  at; link recovery: outage_hold_s, the 4G re-attach, the queued disconnect and the reconnect deliveries, settle_s;
  signal reporting: 0.
- tamper: the cover's settle_s once (the positions could open their covers together).
- security: the meter reader's disconnect attempt watched relay_watch_s per position; the read-only operator's
  disconnect held hold_s per position, and the held group disconnect hold_s before and after its approval.
- smoke: the plan's SETTLE_S per voltage and once for the safe state.

What the floors leave out (each under-counts, so the ratio shows the waste and a little physics): the HES's
periodic reads sharing a position's radio link with its commands, and lost periodic reads; the first pulse edge of
a window (under a pulse period); reference settling readings; relay, load and current settling (ms); the limiter's
evaluation period; the registration waits that conclude a step is unusable (registration_wait_s); a re-attach a
plan's restore leaves under way (the next plan waits for it); trace plots and other reporting; every HTTP, DLMS,
SCPI and Modbus exchange's own time; the session's start (collection, the twin, instrument identities, safe state).
Terms that are expected values rather than minima: the HES read phase (read_interval_s / 2) and, without a truth
file, the 2G poll phase and losses; with a truth file the 2G terms are what the twin's link did in that run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import math
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType

from rig.accuracy import creep_minimum_time_s, pulse_period_s
from rig.config import BenchFile, load_bench
from rig.driver import available_drivers
from rig.plan import load_plan_data
from rig.prepaid import load_limits as load_prepaid_limits
from rig.sim.link import RadioLink
from rig.sim.truth import TruthLog
from rig.sim.twin import Twin
from rig.standards import load_points

ROOT = Path(__file__).resolve().parents[1]
PLANS = ROOT / "testplans"

COMMANDS = ("remote_disconnect", "remote_reconnect")


# -- floor arithmetic --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One part of a floor: what it is, its seconds, how often it is paid."""

    what: str
    seconds: float
    times: float = 1

    @property
    def total_s(self) -> float:
        return self.seconds * self.times


def floor_s(terms: Iterable[Term]) -> float:
    return sum(term.total_s for term in terms)


def polled_deliveries_s(deliveries: int, poll_interval_s: float, last_latency_s: float) -> float:
    """Deliveries each queued only after the previous one arrived, on a link the meter polls: every delivery after
    the first waits for the next poll; the last one's latency ends it (the first poll's phase is not counted)."""
    if deliveries <= 0:
        return 0.0
    return (deliveries - 1) * poll_interval_s + last_latency_s


def loss_cost_s(latency_s: float, retry_after_s: float, poll_interval_s: float | None) -> float:
    """What one lost attempt adds: its latency and the retry wait; on a polling link the retry then waits for the
    next poll, so a loss costs whole poll intervals."""
    if poll_interval_s is None:
        return latency_s + retry_after_s
    return math.ceil((latency_s + retry_after_s) / poll_interval_s - 1e-9) * poll_interval_s


def retried_until_s(delivery_s: float, retry_s: float, ready_at_s: float) -> float:
    """When a command the head end retries every retry_s (after each failed delivery) is executed by a meter that
    answers from ready_at_s on, its first delivery sent at 0."""
    arrives = delivery_s
    while arrives < ready_at_s:
        arrives += retry_s + delivery_s
    return arrives


def ratio_text(time_s: float, floor: float) -> str:
    return f"{time_s / floor:.2f}" if floor > 0 else "-"


# -- the run -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanTime:
    """A test module's time in the run: its tests' summed durations and its wall-clock window."""

    seconds: float
    start_s: float
    stop_s: float


def module_of(result: dict) -> str:
    """'prepaid.test_cutoff' from an Allure result's fullName 'prepaid.test_cutoff#test_cutoff_after_...'."""
    return result["fullName"].partition("#")[0]


def plan_times(results: Iterable[dict]) -> dict[str, PlanTime]:
    """Per test module: the sum of its tests' durations and its first start and last stop (wall clock, s)."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for result in results:
        spans[module_of(result)].append((result["start"] / 1000, result["stop"] / 1000))
    return {module: PlanTime(sum(stop - start for start, stop in rows), min(s for s, _ in rows),
                             max(s for _, s in rows)) for module, rows in spans.items()}


def read_results(folder: Path) -> list[dict]:
    results = [json.loads(path.read_text()) for path in sorted((folder / "allure-results").glob("*-result.json"))]
    if not results:
        raise SystemExit(f"suite_floor: {folder}: no Allure results (allure-results/*-result.json)")
    return results


def run_wall_s(folder: Path) -> float:
    run = json.loads((folder / "run.json").read_text())
    return (datetime.fromisoformat(run["end"]) - datetime.fromisoformat(run["start"])).total_seconds()


def run_suite(folder: Path, bench: Path) -> None:
    """`rig run --bench BENCH --results FOLDER`, its output passed through; a failed run is reported, not fatal."""
    rig = Path(sys.executable).with_name("rig")  # the venv's `rig`, as a user runs it
    command = [*([str(rig)] if rig.exists() else [sys.executable, "-m", "rig.cli"]),
               "run", "--bench", str(bench), "--results", str(folder)]
    print("suite_floor: " + " ".join(command), flush=True)
    code = subprocess.run(command, cwd=ROOT, check=False).returncode
    if code != 0:
        print(f"suite_floor: rig run exited {code}; the times below include the failing tests", file=sys.stderr)


@dataclass
class LinkTruth:
    """What one position's radio link did inside a plan's window, by the twin's truth."""

    lost: list[tuple[str, float]] = field(default_factory=list)  # lost command deliveries: (technology, dB)
    first_2g: tuple[float, float] | None = None  # the first command delivery on 2G: (queued_s, dB)


def link_truth(folder: Path, window: PlanTime) -> dict[int, LinkTruth] | None:
    """Per position, the command deliveries lost and the first one on 2G inside the window; None without a truth
    file (a real bench)."""
    path = folder / "twin-truth.jsonl"
    if not path.exists():
        return None
    state: dict[int, dict] = defaultdict(lambda: {"technology": "4g", "attenuation_db": 0.0})
    truth: dict[int, LinkTruth] = defaultdict(LinkTruth)
    with path.open() as lines:
        for line in lines:
            event = json.loads(line)
            name, position = event.get("event"), event.get("position")
            if name == "link.technology":
                state[position]["technology"] = event["technology"]
            elif name == "link.attenuation":
                state[position]["attenuation_db"] = event["attenuation_db"]
            if event.get("what") not in COMMANDS or not window.start_s <= event["t_wall"] <= window.stop_s:
                continue
            technology, attenuation_db = state[position]["technology"], state[position]["attenuation_db"]
            if name == "link.lost":
                truth[position].lost.append((technology, attenuation_db))
            elif name == "link.delivered" and technology == "2g" and truth[position].first_2g is None:
                truth[position].first_2g = (event["queued_s"], attenuation_db)
    return truth


# -- inputs: plan data, options, the twin's settings ---------------------------------------------------------------


def option_defaults(conftest: Path) -> dict[str, object]:
    """The plans' pytest option defaults ('--link-sweep' -> 'link_sweep': '0,30,...') from addoption calls."""
    defaults = {}
    for node in ast.walk(ast.parse(conftest.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "addoption" and node.args:
            name = ast.literal_eval(node.args[0]).lstrip("-").replace("-", "_")
            for keyword in node.keywords:
                if keyword.arg == "default":
                    with contextlib.suppress(ValueError):
                        defaults[name] = ast.literal_eval(keyword.value)
    return defaults


def plan_module(relative: str) -> ModuleType:
    """A module of testplans (a test module for its cases and constants, a plan's helper module for its loaders),
    imported from its file under a name of its own."""
    path = PLANS / relative
    name = f"suite_floor_plan_{path.parent.name}_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


class TwinTiming:
    """The twin's timing as the bench file sets it: the HES, the meters, and the radio link model."""

    def __init__(self, bench_file: BenchFile):
        twin = Twin(bench_file, None)  # built, not started: no ports, no truth file
        meters = [sim for role, sim in twin.instruments.items() if role.startswith("meter@")]
        engine = twin.instruments["hes"].engine
        self.read_interval_s = engine.read_interval_s
        self.command_retry_s = engine.settings.command_retry_s
        self.policy = engine.policy
        self.boot_s = max(meter.boot_s for meter in meters)
        self.limiter_s = max(meter.min_over_s for meter in meters)
        radio = next(iter(twin.model.radios.values()))
        self.link_settings, self.link_defects = radio.settings, radio.defects

    def profile(self, technology: str):
        return self.link_settings.profiles[technology]

    def link(self, technology: str) -> RadioLink:
        """A radio link of the twin's model on this technology at 0 dB, on a clock that stands still (a lost
        registration stays lost, as it does for a plan at a step that loses it)."""
        link = RadioLink(0, self.link_settings, self.link_defects, TruthLog(None), random.Random(0), lambda: 0.0)
        link.set_technology(technology, by="suite_floor")
        return link

    def at(self, technology: str, attenuation_db: float) -> RadioLink:
        link = self.link(technology)
        link.set_attenuation(attenuation_db, by="suite_floor")
        return link

    def latency_s(self, technology: str, attenuation_db: float) -> float:
        return self.at(technology, attenuation_db).latency_s()

    def usable_steps(self, technology: str, steps: list[float]) -> list[float]:
        """The sweep's steps, in order, up to the first at which the modem loses registration (a sweep ends there)."""
        link, usable = self.link(technology), []
        for step in steps:
            link.set_attenuation(step, by="suite_floor")
            if not link.registered:
                break
            usable.append(step)
        return usable

    def loss_cost_s(self, technology: str, attenuation_db: float) -> float:
        profile = self.profile(technology)
        return loss_cost_s(self.latency_s(technology, attenuation_db), profile.retry_after_s,
                           profile.poll_interval_s)

    def expected_losses(self, technology: str, attenuation_db: float) -> float:
        """Expected lost attempts per delivery at this step: p / (1 - p)."""
        loss = self.at(technology, attenuation_db).loss_probability()
        return loss / (1 - loss) if loss < 1 else math.inf


@dataclass
class Inputs:
    bench_file: BenchFile
    options: dict
    twin: TwinTiming
    folder: Path
    times: dict[str, PlanTime]

    @property
    def l0(self) -> float:
        return self.twin.latency_s("4g", 0.0)


# -- floors per plan -------------------------------------------------------------------------------------------


def accuracy_floor(inputs: Inputs) -> list[Term]:
    config = inputs.bench_file.config
    groups = plan_module("accuracy/meter_groups.py")
    plan_path = Path(str(inputs.options.get("accuracy_plan", PLANS / "accuracy" / "plan.yaml")))
    plan = groups.load_plan(plan_path)
    settle_s = max(config.roles["source"].settle_s, config.roles["current"].settle_s)
    terms = []
    for group in groups.meter_groups(plan_path, config.positions):
        meter, method = group.rating, plan.method
        for point in load_points(group.standard, meter, str(group.standard_file)):
            power_w = meter.un_v * point.current_a * math.cos(math.radians(point.phase_deg))
            period_s = max(pulse_period_s(m.test_output_constant, power_w) for m in group.positions)
            window_s = max(method.min_window_s, method.min_pulses * period_s)
            terms.append(Term(f"{group.label} {point.label}: settle + pulse window", settle_s + window_s))
        start_w = meter.un_v * group.spec.starting_current_factor * meter.base_current_a
        period_s = max(pulse_period_s(m.test_output_constant, start_w) for m in group.positions)
        terms.append(Term(f"{group.label} starting current: settle + {plan.starting_current.pulses} pulses",
                          settle_s + plan.starting_current.pulses * period_s))
        creep_s = plan.creep.duration_factor * max(creep_minimum_time_s(
            group.spec.creep_constant, m.test_output_constant, m.measuring_elements, m.un_v, m.imax_a)
            for m in group.positions)
        terms.append(Term(f"{group.label} creep: settle + minimum time", settle_s + creep_s))
        rest_s = max(plan.dosage.rest_s, settle_s)
        terms.append(Term(f"{group.label} register: rest + dosage + rest", 2 * rest_s + plan.dosage.duration_s))
    return terms


@dataclass
class PrepaidBits:
    """The prepaid floors' shared pieces."""

    supply: Term
    credit: Term
    notice: Term
    disconnect: Term
    restore_cut: list[Term]


def prepaid_bits(inputs: Inputs) -> PrepaidBits:
    l0 = inputs.l0
    return PrepaidBits(supply=Term("supply check: on-demand read", l0), credit=Term("credit set: on-demand read", l0),
                       notice=Term("HES sees it at its next read (read_interval_s / 2)",
                                   inputs.twin.read_interval_s / 2),
                       disconnect=Term("disconnect delivery", l0),
                       restore_cut=[Term("restore: reconnect delivery", l0), Term("restore: read", l0)])


def prepaid_floors(inputs: Inputs) -> dict[str, list[Term]]:
    plan = load_plan_data(PLANS / "prepaid" / "plan.yaml")
    limits = load_prepaid_limits(str(inputs.options["prepaid_limits"]))
    policy, twin, bits = inputs.twin.policy, inputs.twin, prepaid_bits(inputs)
    supply, credit, notice, disconnect, restore_cut = \
        bits.supply, bits.credit, bits.notice, bits.disconnect, bits.restore_cut
    thresholds = len(policy.alert_thresholds_pct)
    floors = {
        "prepaid.test_cutoff": [supply, credit, Term("credit window", plan.cutoff.credit_s), notice, disconnect,
                                *restore_cut],
        "prepaid.test_alerts": [supply, Term("alert base: on-demand read", credit.seconds),
                                Term(f"per threshold: {credit.what}", credit.seconds, thresholds),
                                Term("per threshold: step_s", plan.alerts.step_s, thresholds),
                                Term(f"per threshold: {notice.what}", notice.seconds, thresholds),
                                *restore_cut],
        "prepaid.test_load_limiter": [supply, Term("below the threshold: duration + tolerance",
                                                   twin.limiter_s + limits.limiter_trip_tolerance_s),
                                      Term("above: min_over_threshold_duration", twin.limiter_s),
                                      Term("restore: read", credit.seconds)],
    }
    emergency = policy.emergency_credit.amount > 0
    floors["prepaid.test_emergency_credit"] = [
        supply, Term("settling: on-demand read", credit.seconds), credit,
        Term("credit window", plan.emergency_credit.credit_s),
        Term("emergency credit window", plan.emergency_credit.emergency_s), notice, disconnect, *restore_cut,
    ] if emergency else []
    data = plan.friendly_hours
    cases = len(plan_module("prepaid/test_friendly_hours.py").CASES)
    per_case = [supply, credit, Term("credit_s + hold_s", data.credit_s + data.hold_s),
                Term("lead_s before the window ends", data.lead_s), notice, disconnect, *restore_cut]
    floors["prepaid.test_friendly_hours"] = [Term(f"per case: {t.what}", t.seconds, cases) for t in per_case]
    guard = plan_module("prepaid/test_group_guard.py").CASES
    floors["prepaid.test_group_guard"] = [
        Term("per case: supply reads (positions in parallel)", supply.seconds, len(guard)),
        Term("per case: hold_s", plan.group_guard.hold_s, len(guard)),
        Term("window case: settling reads (positions in parallel)", credit.seconds),
        Term("per case: restore read", credit.seconds, len(guard))]
    floors["prepaid.test_power_cycle"] = power_cycle_floor(inputs, plan, limits, bits)
    return floors


def power_cycle_floor(inputs: Inputs, plan, limits, bits: PrepaidBits) -> list[Term]:
    cases = plan_module("prepaid/test_power_cycle.py").EXPECTED
    l0, twin, off_s = inputs.l0, inputs.twin, plan.power_cycle.off_min_s
    terms = [Term("per case: supply read", l0, len(cases)), Term("per case: disconnect delivery", l0, len(cases))]
    if "stays_disconnected" in cases:
        terms += [Term("stays_disconnected: off_min_s", off_s),
                  Term("stays_disconnected: power_cycle_hold_s", limits.power_cycle_hold_s), *bits.restore_cut]
    if "reconnect_pending" in cases:
        executed_s = retried_until_s(l0, twin.command_retry_s, max(off_s, l0) + twin.boot_s)
        terms += [Term("reconnect_pending: off, HES retries until the meter has booted", executed_s),
                  Term("reconnect_pending: restore read", l0)]
    return terms


def link_floors(inputs: Inputs) -> dict[str, list[Term]]:
    options, twin, sweep = inputs.options, inputs.twin, plan_module("link/sweep.py")
    limits = sweep.load_limits(str(options["link_limits"]))
    steps = sweep.parse_sweep(str(options["link_sweep"]))
    trials, trials_2g = int(options["link_trials"]), int(options["link_2g_trials"])
    sweep_4g = [Term(f"4G {step:g} dB: per trial cut at 0 dB + reconnect delivery",
                     twin.latency_s("4g", 0.0) + twin.latency_s("4g", step), trials)
                for step in twin.usable_steps("4g", steps)]
    deep = twin.usable_steps("4g", sorted(step for step in steps if step > 0))
    group = [Term("0 dB: cut + reconnect delivery", 2 * inputs.l0)]
    if deep:
        group.append(Term(f"{deep[-1]:g} dB: cut + reconnect delivery", 2 * twin.latency_s("4g", deep[-1])))
    window = inputs.times.get("link.test_2g_vs_4g")
    return {
        "link.test_reconnect_latency": sweep_4g,
        "link.test_2g_vs_4g": [*sweep_4g, *sweep_2g(inputs, steps, trials_2g, window)],
        "link.test_group_reconnect": group,
        "link.test_link_recovery": [Term("outage_hold_s", limits.outage_hold_s),
                                    Term("4G re-attach", twin.profile("4g").reattach_s),
                                    Term("queued disconnect + reconnect deliveries", 2 * inputs.l0),
                                    Term("settle_s", limits.settle_s)],
        "link.test_signal_reporting": [],
    }


def sweep_2g(inputs: Inputs, steps: list[float], trials: int, window: PlanTime | None) -> list[Term]:
    """The 2G sweep: a poll per delivery after the first, the last latency; the first poll's phase and the lost
    command deliveries as the twin's truth shows them at the slowest position (without a truth file: half a poll
    interval and the expected losses)."""
    twin = inputs.twin
    usable = twin.usable_steps("2g", steps)
    if not usable:
        return []
    interval = twin.profile("2g").poll_interval_s
    deliveries = 2 * trials * len(usable)
    terms = [Term(f"2G {len(usable)} steps x {trials} trial(s) x 2 deliveries: a poll each after the first",
                  polled_deliveries_s(deliveries, interval, twin.latency_s("2g", usable[-1])))]
    truth = link_truth(inputs.folder, window) if window is not None else None
    if truth is None:
        expected = sum(trials * twin.expected_losses("2g", step) * twin.loss_cost_s("2g", step)
                       for step in usable)  # the reconnects: the cuts are at 0 dB
        return [*terms, Term("first poll's phase (expected)", interval / 2),
                Term("expected lost command deliveries", expected)]
    slowest = max(truth.items(), key=lambda item: twin_2g_extra_s(twin, item[1]), default=None)
    if slowest is None:
        return terms
    position, seen = slowest
    phase_s = first_poll_wait_s(twin, seen)
    losses_s = sum(twin.loss_cost_s(technology, attenuation_db) for technology, attenuation_db in seen.lost)
    return [*terms, Term(f"first poll's phase at position {position} (truth)", phase_s),
            Term(f"{len(seen.lost)} lost command deliveries at position {position} (truth)", losses_s)]


def first_poll_wait_s(twin: TwinTiming, seen: LinkTruth) -> float:
    """How long the first 2G command waited for the meter's poll: its time queued less its latency."""
    if seen.first_2g is None:
        return 0.0
    queued_s, attenuation_db = seen.first_2g
    return max(0.0, queued_s - twin.latency_s("2g", attenuation_db))


def twin_2g_extra_s(twin: TwinTiming, seen: LinkTruth) -> float:
    return first_poll_wait_s(twin, seen) + sum(twin.loss_cost_s(t, a) for t, a in seen.lost)


def tamper_floor(_inputs: Inputs) -> dict[str, list[Term]]:
    plan = load_plan_data(PLANS / "tamper" / "plan.yaml")
    return {"tamper.test_cover_open": [Term("cover closed settle_s (positions together)", plan.cover_open.settle_s)]}


def security_floors(inputs: Inputs) -> dict[str, list[Term]]:
    positions = len(inputs.bench_file.config.positions)
    meter, hes = load_plan_data(PLANS / "security" / "plan.yaml"), load_plan_data(PLANS / "security" / "hes.yaml")
    return {"security.test_meter_security": [Term("reader's disconnect: relay_watch_s per position",
                                                  meter.relay_watch_s, positions)],
            "security.test_hes_security": [Term("read-only operator's disconnect: hold_s per position", hes.hold_s,
                                                positions),
                                           Term("group disconnect held, then approved: hold_s each", hes.hold_s, 2)]}


def smoke_floor(_inputs: Inputs) -> dict[str, list[Term]]:
    module = plan_module("test_bench_smoke.py")
    voltages = next(mark.args[1] for mark in module.test_source_holds_voltage.pytestmark
                    if mark.name == "parametrize")
    return {"test_bench_smoke": [Term("SETTLE_S per voltage", module.SETTLE_S, len(voltages)),
                                 Term("SETTLE_S before safe state", module.SETTLE_S)]}


FLOORS: list[Callable[[Inputs], dict[str, list[Term]]]] = [
    lambda inputs: {"accuracy.test_accuracy": accuracy_floor(inputs)},
    prepaid_floors, link_floors, tamper_floor, security_floors, smoke_floor]


# -- report ----------------------------------------------------------------------------------------------------


def print_table(times: dict[str, PlanTime], floors: dict[str, list[Term]], suite_s: float, explain: bool) -> float:
    """The table; the floor total."""
    rows = [(module, times[module].seconds, floor_s(floors.get(module, []))) for module in times]
    outside_s = suite_s - sum(t for _, t, _ in rows)
    rows.append(("(session: start, collection, between tests, end)", outside_s, 0.0))
    width = max(len(module) for module, _, _ in rows)
    print(f"{'plan':<{width}}  {'time_s':>8}  {'floor_s':>8}  {'ratio':>6}")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}  {'-' * 6}")
    for module, time_s, floor in sorted(rows, key=lambda row: row[1] - row[2], reverse=True):
        print(f"{module:<{width}}  {time_s:8.1f}  {floor:8.1f}  {ratio_text(time_s, floor):>6}")
        if explain:
            for term in floors.get(module, []):
                times_text = f" x {term.times:g}" if term.times != 1 else ""
                print(f"{'':<4}{term.what}: {term.seconds:.3f} s{times_text} = {term.total_s:.2f} s")
    unknown = sorted(set(times) - set(floors))
    if unknown:
        print(f"\nno floor computed (counted as 0): {', '.join(unknown)}")
    total = sum(floor for _, _, floor in rows)
    print(f"\nsum of plan times {suite_s - outside_s:.1f} s, run wall time {suite_s:.1f} s, floor {total:.1f} s")
    return total


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--results", type=Path, help="run folder for the run (default: a new temporary folder)")
    source.add_argument("--results-from", type=Path, metavar="FOLDER",
                        help="a finished run folder of `rig run` to read instead of running")
    parser.add_argument("--bench", type=Path, default=ROOT / "benches" / "sim.yaml",
                        help="bench file the run used (default benches/sim.yaml)")
    parser.add_argument("--explain", action="store_true", help="print every floor's terms")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    folder = args.results_from
    if folder is None:
        folder = args.results or Path(tempfile.mkdtemp(prefix="suite-floor-")) / "run"
        run_suite(folder, args.bench)
    times = plan_times(read_results(folder))
    bench_file = load_bench(args.bench, known_drivers=set(available_drivers()))
    inputs = Inputs(bench_file, option_defaults(PLANS / "conftest.py"), TwinTiming(bench_file), folder, times)
    floors = {module: terms for build in FLOORS for module, terms in build(inputs).items()}
    suite_s = run_wall_s(folder)
    print(f"\nrun folder: {folder}")
    total = print_table(times, floors, suite_s, args.explain)
    print(f"suite_floor ratio={suite_s / total:.2f} suite_s={suite_s:.1f} floor_s={total:.1f}")


if __name__ == "__main__":
    main()
