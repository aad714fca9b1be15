"""Builds the _mapdeploy extension and the two executables it starts.

The C core (csrc/core) is compiled into the extension and into both
executables: mapdeploy-supervisor (plain C) and mapdeploy-worker (C hosting
this very interpreter, so it is built against the Python that runs the build).
Libraries are found with pkg-config: msgpack-c (named ``msgpack-c`` from
6.0 on, ``msgpack`` before), OpenSSL's libcrypto, and libcurl.
"""
from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CORE_SOURCES = sorted(glob.glob("csrc/core/*.c"))
EXT_SOURCES = sorted(glob.glob("csrc/ext/*.c"))
SUPERVISOR_SOURCES = sorted(glob.glob("csrc/supervisor/*.c"))
# Python-facing C shared by the extension and the worker (flatpickle.c).
PYSHARED_SOURCES = sorted(glob.glob("csrc/pyshared/*.c"))
WORKER_SOURCES = sorted(glob.glob("csrc/worker/*.c")) + PYSHARED_SOURCES
BASE_CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-fvisibility=hidden"]
if os.environ.get("MAPDEPLOY_WERROR", "") == "1":
    BASE_CFLAGS.append("-Werror")
SANITIZE = os.environ.get("MAPDEPLOY_SANITIZE", "")  # e.g. "address,undefined"


def pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("mapdeploy build: pkg-config is not installed (Debian: apt-get install pkg-config)")
    except subprocess.CalledProcessError as exc:
        sys.exit(f"mapdeploy build: pkg-config {' '.join(args)} failed: {exc.stderr.strip()}\n"
                 "Install the development packages (Debian: apt-get install libmsgpack-dev "
                 "libssl-dev libcurl4-openssl-dev pkg-config), or run `make example`.")
    return shlex.split(out.stdout)


def msgpack_package() -> str:
    for name in ("msgpack-c", "msgpack"):
        if subprocess.run(["pkg-config", "--exists", name]).returncode == 0:
            return name
    sys.exit("mapdeploy build: msgpack-c was not found by pkg-config (looked for msgpack-c.pc "
             "and msgpack.pc). Debian: apt-get install libmsgpack-dev")


PACKAGES = [msgpack_package(), "libcrypto", "libcurl"]
PKG_CFLAGS = pkg_config("--cflags", *PACKAGES)
PKG_LIBS = pkg_config("--libs", *PACKAGES)
SAN_FLAGS = [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer"] if SANITIZE else []


def python_embed_link_args() -> list[str]:
    """Link flags for a program that hosts this interpreter (python3-config --embed --ldflags)."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    version = sysconfig.get_config_var("LDVERSION") or sysconfig.get_config_var("VERSION")
    libs = shlex.split(sysconfig.get_config_var("LIBS") or "") + shlex.split(
        sysconfig.get_config_var("SYSLIBS") or "")
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return [f"-L{libdir}", f"-Wl,-rpath,{libdir}", f"-lpython{version}", *libs]
    # A static interpreter: the worker must export its symbols so that the
    # extension modules it imports can bind to them.
    return [f"-L{libdir}", f"-lpython{version}", "-Wl,--export-dynamic", *libs]


class BuildWithExecutables(build_ext):
    """build_ext that also links mapdeploy-supervisor and mapdeploy-worker into mapdeploy/_bin."""

    def run(self) -> None:
        super().run()
        if self.inplace:
            bin_dir = os.path.join(HERE, "python", "mapdeploy", "_bin")
        else:
            bin_dir = os.path.join(self.build_lib, "mapdeploy", "_bin")
        os.makedirs(bin_dir, exist_ok=True)
        include = [os.path.join(HERE, "csrc", "core")]
        cflags = BASE_CFLAGS + ["-O2", "-g"] + PKG_CFLAGS + SAN_FLAGS
        core_objects = self.compiler.compile(CORE_SOURCES, output_dir=os.path.join(self.build_temp, "exe"),
                                             include_dirs=include, extra_postargs=cflags)
        supervisor_objects = self.compiler.compile(
            SUPERVISOR_SOURCES, output_dir=os.path.join(self.build_temp, "exe"),
            include_dirs=include, extra_postargs=cflags)
        self.compiler.link_executable(supervisor_objects + core_objects, "mapdeploy-supervisor",
                                      output_dir=bin_dir,
                                      extra_postargs=PKG_LIBS + ["-pthread"] + SAN_FLAGS)
        worker_objects = self.compiler.compile(
            WORKER_SOURCES, output_dir=os.path.join(self.build_temp, "exe"),
            include_dirs=include + [os.path.join(HERE, "csrc", "pyshared"),
                                    sysconfig.get_paths()["include"]], extra_postargs=cflags)
        self.compiler.link_executable(worker_objects + core_objects, "mapdeploy-worker",
                                      output_dir=bin_dir,
                                      extra_postargs=PKG_LIBS + python_embed_link_args() + SAN_FLAGS)


setup(
    ext_modules=[
        Extension(
            "mapdeploy._mapdeploy",
            sources=EXT_SOURCES + PYSHARED_SOURCES + CORE_SOURCES,
            include_dirs=["csrc/core", "csrc/ext", "csrc/pyshared"],
            extra_compile_args=BASE_CFLAGS + PKG_CFLAGS + SAN_FLAGS,
            extra_link_args=PKG_LIBS + SAN_FLAGS,
        )
    ],
    cmdclass={"build_ext": BuildWithExecutables},
)
