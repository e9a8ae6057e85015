"""Structured mutation of valid inputs: a seed (a valid frame, reply, file) changed by a few stacked mutations
(bit flips, interesting bytes, length fields off by one, truncations, repeated chunks, tokens of the protocol,
splices with another seed), so that a parser is reached past its first check. One engine for the Hypothesis
tests (its `randoms()` drive it, so failures shrink and replay) and for bench/fuzz.py (a seeded Random)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFE, 0xFF)
TEXT_TOKENS = (b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3", b",", b";", b":", b"?", b'"', b"'", b" ",
               b"-1", b"0", b"99", b"255", b"65536", b"4294967296", b"1e999", b"-1e999", b"NaN", b"inf",
               b"9" * 40, b"\t", b"=", b"*", b"+", b"\\", b"{", b"}", b"[", b"]")
MAX_REPEAT = 3000  # a chunk repeated this often nests a structure past any sane depth


def _flip_bit(data: bytearray, rng: random.Random, _tokens, _seeds) -> None:
    if data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def _interesting_byte(data: bytearray, rng: random.Random, _tokens, _seeds) -> None:
    if data:
        data[rng.randrange(len(data))] = rng.choice(INTERESTING_BYTES)


def _off_by_one(data: bytearray, rng: random.Random, _tokens, _seeds) -> None:
    """A length or count field (any byte here) one more or one less."""
    if data:
        index = rng.randrange(len(data))
        data[index] = (data[index] + rng.choice((-1, 1))) % 256


def _truncate(data: bytearray, rng: random.Random, _tokens, _seeds) -> None:
    if data:
        del data[rng.randrange(len(data)):]


def _delete_range(data: bytearray, rng: random.Random, _tokens, _seeds) -> None:
    if data:
        start = rng.randrange(len(data))
        del data[start:start + rng.randint(1, 16)]


def _insert_random(data: bytearray, rng: random.Random, _tokens, _seeds) -> None:
    index = rng.randint(0, len(data))
    data[index:index] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))


def _insert_token(data: bytearray, rng: random.Random, tokens, _seeds) -> None:
    index = rng.randint(0, len(data))
    data[index:index] = rng.choice(tokens)


def _replace_with_token(data: bytearray, rng: random.Random, tokens, _seeds) -> None:
    if data:
        start = rng.randrange(len(data))
        data[start:start + rng.randint(1, 6)] = rng.choice(tokens)


def _repeat_chunk(data: bytearray, rng: random.Random, _tokens, _seeds) -> None:
    """A chunk repeated: a long field, or a structure nested deep when the chunk opens one."""
    if data:
        start = rng.randrange(len(data))
        chunk = bytes(data[start:start + rng.randint(1, 4)])
        times = rng.choice((2, 3, 17, 200, MAX_REPEAT))
        data[start:start] = chunk * times


def _splice(data: bytearray, rng: random.Random, _tokens, seeds) -> None:
    other = rng.choice(seeds)
    if other:
        cut = rng.randint(0, len(data))
        data[cut:] = other[rng.randrange(len(other)):]


MUTATIONS: tuple[Callable, ...] = (_flip_bit, _interesting_byte, _off_by_one, _off_by_one, _truncate,
                                   _delete_range, _insert_random, _insert_token, _replace_with_token,
                                   _replace_with_token, _repeat_chunk, _splice)


def mutate(seed: bytes, rng: random.Random, seeds: Sequence[bytes] = (), tokens: Sequence[bytes] = TEXT_TOKENS,
           max_mutations: int = 4) -> bytes:
    """The seed with 1..max_mutations stacked mutations; now and then pure random bytes instead."""
    if rng.random() < 0.03:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    data = bytearray(seed)
    for _ in range(rng.randint(1, max_mutations)):
        rng.choice(MUTATIONS)(data, rng, tokens, seeds or (seed,))
    return bytes(data)


# -- JSON documents: mutated as trees, then sometimes as bytes --------------------------------------------------

JSON_ODDITIES = (None, True, False, 0, -1, 1.5, 10**30, "", "x", "12.345", "-0.00", "NaN", "1e999", [], {},
                 "2026-13-45T25:61:00", [[[]]], {"a": {}})


def _json_mutate(value, rng: random.Random):
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        choice = rng.random()
        copy = dict(value)
        if choice < 0.3:
            del copy[key]
        elif choice < 0.6:
            copy[key] = rng.choice(JSON_ODDITIES)
        else:
            copy[key] = _json_mutate(copy[key], rng)
        return copy
    if isinstance(value, list) and value and rng.random() < 0.7:
        copy = list(value)
        index = rng.randrange(len(copy))
        copy[index] = _json_mutate(copy[index], rng) if rng.random() < 0.6 else rng.choice(JSON_ODDITIES)
        return copy
    return rng.choice(JSON_ODDITIES)


def mutate_json(document: bytes, rng: random.Random, seeds: Sequence[bytes] = ()) -> bytes:
    """A JSON document changed as a tree (keys dropped, values of another type), sometimes then as bytes."""
    value = json.loads(document)
    for _ in range(rng.randint(1, 3)):
        value = _json_mutate(value, rng)
    data = json.dumps(value).encode()
    if rng.random() < 0.25:
        data = mutate(data, rng, seeds)
    if rng.random() < 0.02:
        data = b"[" * rng.choice((50, 5000, 100000)) + data
    return data


# -- Hypothesis ---------------------------------------------------------------------------------------------------


def mutated(seeds: Sequence[bytes], engine: Callable[..., bytes] = mutate) -> st.SearchStrategy[bytes]:
    """Seeds as they are, seeds mutated by `engine`, and plain random bytes."""
    seeds = list(seeds)
    changed = st.builds(lambda seed, rng: engine(seed, rng, seeds), st.sampled_from(seeds),
                        st.randoms(use_true_random=False))
    return st.one_of(
        st.sampled_from(seeds),
        changed,
        changed,
        st.binary(max_size=256),
    )
