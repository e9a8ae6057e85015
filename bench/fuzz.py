"""The long fuzz run: every parser of outside bytes (tests/fuzz/targets.py) fed seeded mutations of valid inputs,
then every twin server fed fuzzed traffic on its real transport and asked a valid request.

Per parser: cases tried and crashes (an exception other than the parser's own clear error), each distinct crash
with a reproducer (the case in hex, and in --crash-dir as a file for --replay). Per server: messages sent, the
answer to the valid request afterwards and the exceptions the server raised meanwhile. Last line:
`fuzz cases=<n> crashes=<k>` (cases: parser cases and server messages; crashes: crashing cases and server errors).

    .venv/bin/python bench/fuzz.py                      # 100,000 cases, seed 1
    .venv/bin/python bench/fuzz.py --cases 5000 --seed 7 --only rig.yaml --messages 0
    .venv/bin/python bench/fuzz.py --replay rig.dlms.data /tmp/fuzz-crashes/rig.dlms.data-1.bin
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "fuzz"), str(ROOT / "tests"), str(ROOT)]

from servers import SURVIVALS, survive  # noqa: E402 - after the path to the test helpers
from targets import TARGETS, Crash, FuzzContext, Target, run_case  # noqa: E402

QUIET_LOGGERS = ("pymodbus", "aiohttp.server", "dlms_cosem", "asyncio")  # each logs every malformed input it gets
SHOWN_HEX = 400  # bytes of a case printed in hex; longer ones only in their file


def share_of_cases(targets: list[Target], total: int) -> dict[str, int]:
    """Cases per target, in proportion to 1/cost, adding up to total."""
    weights = {target.name: 1.0 / target.cost for target in targets}
    scale = total / sum(weights.values())
    shares = {name: int(weight * scale) for name, weight in weights.items()}
    for name in list(shares)[: total - sum(shares.values())]:
        shares[name] += 1
    return shares


def crash_key(crash: Crash) -> tuple:
    """Crashes are told apart by exception type and where it was raised (a recursion by its file alone: it ends
    wherever the stack happened to run out)."""
    frames = traceback.extract_tb(crash.error.__traceback__)
    own = [f for f in frames if "site-packages" not in f.filename and "/lib/python" not in f.filename]
    if not own:
        return type(crash.error).__name__, "?"
    if isinstance(crash.error, RecursionError):
        return type(crash.error).__name__, Path(own[-1].filename).name
    return type(crash.error).__name__, f"{Path(own[-1].filename).name}:{own[-1].lineno}"


def report_crash(crash: Crash, number: int, crash_dir: Path) -> None:
    crash_dir.mkdir(parents=True, exist_ok=True)
    path = crash_dir / f"{crash.target}-{number}.bin"
    path.write_bytes(crash.data)
    name, where = crash_key(crash)
    shown = crash.data[:SHOWN_HEX].hex() + ("..." if len(crash.data) > SHOWN_HEX else "")
    print(f"  crash {number}: {crash.describe()} (at {where})")
    print(f"    case ({len(crash.data)} bytes): {shown}")
    print(f"    reproduce: .venv/bin/python bench/fuzz.py --replay {crash.target} {path}")


def fuzz_target(context: FuzzContext, target: Target, cases: int, seed: int, crash_dir: Path) -> tuple[int, int]:
    """(cases tried, crashing cases) of one target; each distinct crash printed once."""
    parse = target.make(context)
    rng = random.Random(f"{seed}:{target.name}")
    started = time.monotonic()
    crashing, seen = 0, set()
    for index in range(cases):
        data = target.seeds[index] if index < len(target.seeds) else target.generate(rng)
        crash = run_case(target, parse, data)
        if crash is None:
            continue
        crashing += 1
        if crash_key(crash) not in seen:
            seen.add(crash_key(crash))
            report_crash(crash, len(seen), crash_dir)
    print(f"{target.name}: cases={cases} crashes={crashing} distinct={len(seen)} "
          f"({time.monotonic() - started:.1f} s)", flush=True)
    return cases, crashing


def fuzz_servers(context: FuzzContext, messages: int, seed: int) -> tuple[int, int]:
    """(messages sent, server errors) over every twin server; a server that stopped answering is an error."""
    sent_total, errors = 0, 0
    for kind in SURVIVALS:
        started = time.monotonic()
        try:
            survival = survive(context, kind, messages, random.Random(f"{seed}:server:{kind}"))
        except Exception as exc:  # noqa: BLE001 - a server that no longer answers: reported, counted
            print(f"server {kind}: messages={messages} answered=no ({type(exc).__name__}: {exc})", flush=True)
            sent_total, errors = sent_total + messages, errors + 1
            continue
        sent_total += survival.sent
        errors += len(survival.server_errors)
        print(f"server {survival.server}: messages={survival.sent} answered=yes errors={len(survival.server_errors)} "
              f"valid request answered {survival.answer.strip()[:60]!r} ({time.monotonic() - started:.1f} s)",
              flush=True)
        for error in survival.server_errors[:5]:
            print(f"  server error: {error[:300]}")
    return sent_total, errors


def replay(name: str, path: Path) -> int:
    target = TARGETS[name]
    context = FuzzContext()
    try:
        parse = target.make(context)
        data = path.read_bytes()
        try:
            parse(data)
        except target.clear_errors as exc:
            print(f"{name}: its own clear error: {type(exc).__name__}: {exc}")
            return 0
        except Exception:  # noqa: BLE001 - the crash, shown whole
            traceback.print_exc()
            return 1
        print(f"{name}: parsed without error")
        return 0
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000, help="parser cases over all targets (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the mutations (default 1)")
    parser.add_argument("--only", action="append", default=[], metavar="PREFIX",
                        help="fuzz only the targets whose name starts so (repeatable), e.g. rig.yaml, twin.dlms")
    parser.add_argument("--messages", type=int, default=1000, help="fuzzed messages per twin server (default 1000; "
                                                                    "0: no server run)")
    parser.add_argument("--crash-dir", type=Path, default=Path("/tmp/fuzz-crashes"),
                        help="where each distinct crash's case is written (default /tmp/fuzz-crashes)")
    parser.add_argument("--replay", nargs=2, metavar=("TARGET", "FILE"), help="run one case and show its traceback")
    parser.add_argument("--list", action="store_true", help="list the targets and their clear errors")
    args = parser.parse_args(argv)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if args.list:
        for target in TARGETS.values():
            errors = ", ".join(error.__name__ for error in target.clear_errors) or "none: it must never raise"
            print(f"{target.name} ({target.side}): clear errors {errors}")
        return 0
    if args.replay:
        return replay(args.replay[0], Path(args.replay[1]))
    targets = [t for t in TARGETS.values() if not args.only or any(t.name.startswith(p) for p in args.only)]
    started = time.monotonic()
    cases = crashes = 0
    context = FuzzContext()
    try:
        for name, share in share_of_cases(targets, args.cases).items():
            tried, crashing = fuzz_target(context, TARGETS[name], share, args.seed, args.crash_dir)
            cases, crashes = cases + tried, crashes + crashing
        if args.messages > 0:
            sent, errors = fuzz_servers(context, args.messages, args.seed)
            cases, crashes = cases + sent, crashes + errors
    finally:
        context.close()
    print(f"fuzz time {time.monotonic() - started:.0f} s, seed {args.seed}")
    print(f"fuzz cases={cases} crashes={crashes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
