"""flat_pickles / flat_unpickle: the C writer and reader of plain pickles (kwargs in the client,
kwargs and return values in the worker) agree with the pickle module exactly, and leave every
value they do not handle to it."""
from __future__ import annotations

import fractions
import math
import pickle
import random
from typing import Any

import pytest

import mapdeploy as gl
from mapdeploy._mapdeploy import flat_pickles, flat_unpickle
from mapdeploy._pickling import dumps_all_kwargs

INTS = [0, 1, 127, 128, 255, 256, 32767, 32768, 65535, 65536, -1, -128, -129, -256, -257,
        -32768, -32769, 2**23, 2**24, -2**23, -2**24, 0x7fffff, 0x800000, 0xffffff,
        2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**32, 2**40, 2**47, -2**47, 2**55,
        2**63 - 1, -2**63]
FLOATS = [0.0, -0.0, 1.5, 1e308, -1e-308, 5e-324, math.inf, -math.inf, math.pi]
STRINGS = ["", "x" * 255, "x" * 256, "é" * 200, "日本語", "x" * 100_000]
BLOBS = [b"", b"\x00" * 255, b"\x01" * 256, bytes(range(256)) * 1000]


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal keys in the same order, equal values of the same types (-0.0 kept)."""
    return (list(a) == list(b) and all(type(a[k]) is type(b[k]) for k in a)
            and all(a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k])
                                     and math.isnan(b[k])) for k in a)
            and all(math.copysign(1, a[k]) == math.copysign(1, b[k])
                    for k in a if isinstance(a[k], float) and not math.isnan(a[k])))


FLAT = ([{}, {"x": 0, "y": 1}, {"a": None, "b": True, "c": False}, {"ü": "日本"}]
        + [{"v": i} for i in INTS] + [{"f": f} for f in FLOATS] + [{"n": math.nan}]
        + [{"s": s} for s in STRINGS] + [{"b": b} for b in BLOBS]
        + [{f"k{i}": i for i in range(2500)}])  # more than one SETITEMS batch


@pytest.mark.parametrize("kwargs", FLAT, ids=range(len(FLAT)))
def test_flat_dicts_read_back_exactly(kwargs: dict[str, Any]) -> None:
    (data,), left = flat_pickles([kwargs])
    assert data is not None and left == []
    assert same(pickle.loads(data), kwargs)


def test_random_flat_dicts_read_back_exactly() -> None:
    rng = random.Random(4)
    values = [lambda: rng.randint(-2**63, 2**63 - 1), lambda: rng.randint(-300, 70000),
              lambda: rng.uniform(-1e9, 1e9), lambda: rng.choice([None, True, False]),
              lambda: "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 300))),
              lambda: rng.randbytes(rng.randint(0, 600))]
    dicts = [{f"k{j}": rng.choice(values)() for j in range(rng.randint(0, 6))}
             for _ in range(2000)]
    for kwargs, data in zip(dicts, flat_pickles(dicts)[0]):
        assert data is not None and same(pickle.loads(data), kwargs)


class SubDict(dict):
    pass


class SubInt(int):
    pass


NOT_FLAT = [SubDict(a=1), {"a": [1]}, {"a": (1,)}, {"a": 1j}, {"a": 2**63}, {"a": -2**63 - 1},
            {1: 2}, {"a": SubInt(3)}, {"a": "\ud800"}, {"\ud800": 1}, 5, None, "ab"]


def test_anything_else_is_left_to_pickle() -> None:
    assert flat_pickles(NOT_FLAT) == ([None] * len(NOT_FLAT), list(range(len(NOT_FLAT))))
    mixed = [FLAT[1], NOT_FLAT[0], FLAT[2], NOT_FLAT[4]]
    pickled, left = flat_pickles(mixed)
    assert left == [1, 3] and pickled[1] is None and pickled[3] is None
    assert pickle.loads(pickled[0]) == FLAT[1] and pickle.loads(pickled[2]) == FLAT[2]
    with pytest.raises(TypeError):
        flat_pickles(tuple(FLAT))  # type: ignore[arg-type]


def test_a_mixed_parameter_set_keeps_its_order_and_values() -> None:
    kwargs_list = [{"a": 1}, {"a": [1, 2]}, {"a": SubInt(7)}, {"a": "x"}, {"a": 2**70}]
    pickled = dumps_all_kwargs(kwargs_list, lambda i: f"parameter_set[{i}]")
    assert [pickle.loads(p) for p in pickled] == kwargs_list
    assert type(pickle.loads(pickled[2])["a"]) is SubInt


def test_a_job_of_flat_and_other_dicts_runs() -> None:
    from jobfuncs import add
    env = gl.deploy.environment.LocalAsync("flat", num_workers=1)
    job = gl.deploy.map_job.create(add, [{"x": 1, "y": 2}, {"x": 2**70, "y": 1},
                                         {"x": 1.5, "y": True}], environment=env)
    assert job.get_results() == [3, 2**70 + 1, 2.5]


@pytest.mark.parametrize("kwargs", FLAT, ids=range(len(FLAT)))
def test_the_reader_reads_what_the_writer_wrote(kwargs: dict[str, Any]) -> None:
    (data,), _ = flat_pickles([kwargs])
    ok, value = flat_unpickle(data)
    assert ok and same(value, kwargs)


def test_the_reader_agrees_with_pickle_or_declines() -> None:
    """Whatever it reads, pickle.loads reads the same; the rest it leaves to pickle.loads."""
    samples: list[Any] = [None, True, False, 0, -5, 2**40, 2**70, 1.25, "é", b"x", [1], (1,),
                          {"a": 1}, {"a": [1]}, {1: 2}, SubInt(3), {"a": {"b": 1}}]
    for obj in samples:
        for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
            data = pickle.dumps(obj, protocol)
            ok, value = flat_unpickle(data)
            if ok:
                assert value == pickle.loads(data) and type(value) is type(pickle.loads(data))
    rng = random.Random(5)
    base = flat_pickles(FLAT[:40])[0]
    for _ in range(5000):
        data = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(len(data)):]
        try:
            ok, value = flat_unpickle(bytes(data))
        except (ValueError, MemoryError):
            continue  # malformed: refused, never read past the end
        if ok:
            try:
                expected = pickle.loads(bytes(data))
            except Exception:  # noqa: BLE001 - pickle refuses what we read: a mismatch
                pytest.fail(f"flat_unpickle read {bytes(data)!r} that pickle.loads refuses")
            assert expected == value or (value != value and expected != expected)


def test_workers_return_plain_and_other_values() -> None:
    from jobfuncs import identity
    env = gl.deploy.environment.LocalAsync("flatret", num_workers=1)
    values = [None, True, 7, 2**63 - 1, 2**70, -2.5, "é" * 300, b"\x00" * 300, {"a": 1, "b": "x"},
              {"a": [1]}, [1, 2], fractions.Fraction(1, 3), {"a": fractions.Fraction(1, 3)}]
    job = gl.deploy.map_job.create(identity, [{"x": v} for v in values], environment=env)
    results = job.get_results()
    assert results == values
    assert [type(r) for r in results] == [type(v) for v in values]


def test_large_bytes_are_written_out_of_band():
    from mapdeploy._mapdeploy import BLOB_THRESHOLD
    big = bytes(range(256)) * (BLOB_THRESHOLD // 256)
    below = big[:-1]
    kwargs = [{"a": big, "b": 1, "c": below, "d": big}, {"a": below}, {"a": [big]}]
    (first, second, third), left = flat_pickles(kwargs)
    assert left == [2]
    data, buffers = first
    assert buffers == [big, big] and all(buffer is big for buffer in buffers)
    assert len(data) < 2 * len(below)   # the large values are not in it
    loaded = pickle.loads(data, buffers=buffers)
    assert loaded == kwargs[0] and loaded["a"] is big
    assert isinstance(second, bytes) and pickle.loads(second) == {"a": below}
    assert third is None   # not flat: pickled by dumps_all_kwargs, where bytes nested in
    [nested] = dumps_all_kwargs([kwargs[2]], str)   # a list stay in band
    assert isinstance(nested, bytes) and pickle.loads(nested) == kwargs[2]
