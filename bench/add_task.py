"""The no-op task the benchmarks run, importable by every system's workers."""


def add(x, y):
    return x + y


def call_with_kwargs(kwargs):
    return add(**kwargs)
