"""Where the engine's executables are, and the session folder that holds every job."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from ._errors import MapDeployError, StorageError

SUPERVISOR = "mapdeploy-supervisor"
WORKER = "mapdeploy-worker"
MAX_WORKER_BUDGET = 4096  # SV_MAX_BUDGET in csrc/supervisor/supervisor.h
_SUBFOLDERS = ("jobs", "environments", "slots", "pools")


def executable(name: str) -> str:
    """Absolute path of one of the installed executables (MAPDEPLOY_BIN_DIR overrides)."""
    folder = os.environ.get("MAPDEPLOY_BIN_DIR") or os.path.join(os.path.dirname(__file__), "_bin")
    path = os.path.join(folder, name)
    if not os.access(path, os.X_OK):
        raise MapDeployError(
            f"the mapdeploy executable {path} is missing or not executable; "
            "reinstall mapdeploy with `pip install .` from its source folder")
    return path


# home_path() by what it depends on: a job asks for it several times, and
# pathlib's expanduser/absolute cost ~25 us a call
_HOME_PATHS: dict[tuple[str, str, str], Path] = {}


def home_path() -> Path:
    """Where the session folder is (MAPDEPLOY_HOME, else ~/.mapdeploy), absolute; not created."""
    configured = os.environ.get("MAPDEPLOY_HOME") or ""
    # a relative MAPDEPLOY_HOME is relative to the working directory of the moment
    cwd = os.getcwd() if configured and not configured.startswith("/") else ""
    key = (configured, os.environ.get("HOME") or "", cwd)
    found = _HOME_PATHS.get(key)
    if found is None:
        # absolute: job folders are handed to a warm pool running in another directory
        found = Path(configured or Path.home() / ".mapdeploy").expanduser().absolute()
        if len(_HOME_PATHS) >= 16:
            _HOME_PATHS.clear()
        _HOME_PATHS[key] = found
    return found


def home() -> Path:
    """The per-user session folder (MAPDEPLOY_HOME, else ~/.mapdeploy), created 0700 on first use."""
    root = home_path()
    text = str(root)
    try:
        # the common case, on every job: everything is there already
        if stat.S_IMODE(os.stat(text).st_mode) == 0o700 and all(
                os.path.isdir(f"{text}/{sub}") for sub in _SUBFOLDERS):
            return root
    except OSError:
        pass
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in _SUBFOLDERS:
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


def slots_dir() -> Path:
    """The worker slots every supervisor of the session shares (see docs/architecture.md, "Many jobs")."""
    return home() / "slots"


def setting(name: str, kind: type, low: float, high: float, default: Any, meaning: str) -> Any:
    """The number in environment variable name (default when unset), checked to be in [low, high]."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ValueError(f"{name} must be {meaning}, not {raw!r}")
    return value


def worker_budget() -> int:
    """Worker processes all running jobs of the session may have at once: MAPDEPLOY_WORKER_BUDGET, else 0 (one per core)."""
    return int(setting("MAPDEPLOY_WORKER_BUDGET", int, 1, MAX_WORKER_BUDGET, 0,
                       f"a whole number from 1 to {MAX_WORKER_BUDGET} (worker processes for all "
                       "running jobs); unset it for one per core"))
