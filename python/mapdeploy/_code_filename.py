"""Travels by value inside a job's pickle: the worker never imports mapdeploy.

cloudpickle 3.1.3 and later replace the file name of every function pickled
by value with "<dynamic-code>" (to make pickles deterministic). A worker
formats a failed task's traceback from the code's file name, so without this
the traceback would lose the user's own source lines.
"""


def with_code_filename(func, filename):
    """Gives func's code, and the code nested in it, back the file it was defined in."""
    code_type = type(with_code_filename.__code__)

    def renamed(code):
        consts = tuple(renamed(c) if isinstance(c, code_type) else c for c in code.co_consts)
        return code.replace(co_filename=filename, co_consts=consts)

    code = getattr(func, "__code__", None)
    if isinstance(code, code_type) and code.co_filename != filename:
        func.__code__ = renamed(code)
    return func
