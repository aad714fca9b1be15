"""The tasks the benchmarks run, importable by every system's workers.

Each peer that has no kwargs map of its own runs ``call_*`` wrappers that
take one kwargs dict, which is how a user would port ``f(**kw)`` to them.
"""
import time


def add(x, y):
    """The no-op task: cases 1, 2 and 4."""
    return x + y


def call_with_kwargs(kwargs):
    """``add(**kwargs)`` for peers that map over one argument."""
    return add(**kwargs)


def add_or_raise(x, y):
    """Case 5: raises for 1 % of the tasks (x divisible by 100)."""
    if x % 100 == 0:
        raise ValueError(f"task {x} fails on purpose")
    return x + y


def call_add_or_raise(kwargs):
    """``add_or_raise(**kwargs)``, the exception returned as a value.

    Peers stop at the first exception (Pool.map, joblib) or need one future
    per task; returning it is how a user keeps the other results, which is
    what mapdeploy does by itself.
    """
    try:
        return add_or_raise(**kwargs)
    except Exception as error:  # noqa: BLE001 - the exception is the result
        return error


def echo(data):
    """Case 3: returns its (large) argument."""
    return data


def call_echo(kwargs):
    """``echo(**kwargs)`` for peers that map over one argument."""
    return echo(**kwargs)


def sleep_10ms(x):
    """Case 6: a task that takes 10 ms of wall time."""
    time.sleep(0.01)
    return x


def call_sleep_10ms(kwargs):
    """``sleep_10ms(**kwargs)`` for peers that map over one argument."""
    return sleep_10ms(**kwargs)
