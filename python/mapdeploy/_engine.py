"""Where the engine's executables are, and the session folder that holds every job."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ._errors import MapDeployError, StorageError

SUPERVISOR = "mapdeploy-supervisor"
WORKER = "mapdeploy-worker"


def executable(name: str) -> str:
    """Absolute path of one of the installed executables (MAPDEPLOY_BIN_DIR overrides)."""
    folder = os.environ.get("MAPDEPLOY_BIN_DIR") or os.path.join(os.path.dirname(__file__), "_bin")
    path = os.path.join(folder, name)
    if not os.access(path, os.X_OK):
        raise MapDeployError(
            f"the mapdeploy executable {path} is missing or not executable; "
            "reinstall mapdeploy with `pip install .` from its source folder")
    return path


def home() -> Path:
    """The per-user session folder (MAPDEPLOY_HOME, else ~/.mapdeploy), created 0700 on first use."""
    root = Path(os.environ.get("MAPDEPLOY_HOME") or Path.home() / ".mapdeploy").expanduser()
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("jobs", "environments"):
            (root / sub).mkdir(mode=0o700, exist_ok=True)
    except OSError as error:
        raise StorageError(
            error.errno, f"cannot use the session folder {root}: {error.strerror}. "
            "Make it writable, or point MAPDEPLOY_HOME at a folder you own") from error
    mode = root.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        try:
            root.chmod(0o700)
        except OSError:
            pass
    return root


def jobs_dir() -> Path:
    return home() / "jobs"


def environments_dir() -> Path:
    return home() / "environments"
