"""Functions that tests run as tasks. Kept free of pytest so that workers import it quickly."""
import ctypes
import os
import signal
import sys
import threading
import time


def add(x, y):
    return x + y


def add_combiner(**kwargs):
    return sum(kwargs.values())


def keys_combiner(**kwargs):
    return sorted(kwargs.items(), key=lambda item: item[0])


def failing_combiner(**kwargs):
    raise ValueError(f"combiner saw {len(kwargs)} results")


def no_args():
    return "done"


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def exit_with(code):
    os._exit(code)


def kill_self(sig):
    os.kill(os.getpid(), sig)
    time.sleep(5)


def segfault():
    ctypes.string_at(0)


def kill_on(x, bad):
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def chatty(x):
    print(f"task says hello {x}")
    print(f"task complains {x}", file=sys.stderr)
    return x


def return_lock():
    return threading.Lock()


def raise_value_error(message):
    raise ValueError(message)


def whoami():
    return os.getpid()


def environment_variable(name):
    return os.environ.get(name)


def cwd_and_path():
    return os.getcwd(), list(sys.path)


def big(n):
    return b"x" * n


def big_after(n, seconds):
    time.sleep(seconds)
    return b"x" * n


def big_text_after(n, seconds):
    """Like big_after, as a str: a large str stays in the results envelope (no blob)."""
    time.sleep(seconds)
    return "x" * n


def allocate_without_end(x):
    """Allocates until the memory limit stops it; returns x if it ever could stop."""
    hoard = []
    while True:
        hoard.append(bytearray(16 * 1024 * 1024))


def allocate_or_return(x):
    """Task 1 allocates without end; the others return x."""
    if x == 1:
        allocate_without_end(x)
    return x


def print_both(x):
    """Prints to both streams, then fails for negative x."""
    print(f"stdout says {x}")
    print(f"stderr says {x}", file=sys.stderr)
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x


def print_bytes(n, char="a"):
    """Prints n bytes (in UTF-8) of char, no newline."""
    sys.stdout.write(char * (n // len(char.encode())))
    return n


def replace_stdout_or_print(replace):
    """With replace, leaves sys.stdout pointing elsewhere, as a careless task might; else prints."""
    if replace:
        import io
        sys.stdout = io.StringIO()
        print("lost")
        return "replaced"
    print("printed")
    return "printed"


def chatty_combiner(**results):
    print(f"combining {len(results)}")
    return len(results)


def slow_chatty(x, seconds=0.3):
    time.sleep(seconds)
    return print_both(x)


def raise_message(message):
    raise ValueError(message)


def identity(x):
    """Returns its argument (return values of every kind)."""
    return x


def echo(data):
    return data


def big_bytes(n, seed):
    """n bytes that differ from task to task."""
    head = bytes([seed % 256]) + os.urandom(min(n - 1, 64))
    return head + bytes(n - len(head))


def describe_array(array):
    """(writable, sum) of a numpy array argument, and the array doubled."""
    return bool(array.flags.writeable), float(array.sum()), array * 2


def sleep_echo(data, seconds):
    time.sleep(seconds)
    return data


def total_length(**values):
    return sum(len(value) for value in values.values() if value is not None)


def pid_after(seconds):
    """Sleeps, then returns the worker's pid: tasks long enough to need every worker."""
    time.sleep(seconds)
    return os.getpid()


def after_file(x, path):
    """Returns x at once when path is None, else once the file path exists (at most 60 s)."""
    deadline = time.monotonic() + 60
    while path is not None and not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return x


def peak_then_pid(megabytes):
    """Touches megabytes of memory, frees them, returns the worker's pid."""
    block = b"x" * (megabytes << 20)
    del block
    return os.getpid()
