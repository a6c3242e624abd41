"""The local staging folder: work folders of runs, and cleaning up after runs that died.

Downloads and conversions happen in ``<staging>/<prefix>-<id>/`` (``store.staging_dir()``:
``<root>/.staging`` for a local root, the machine's temp folder for ``gs://``). A run removes its
folder when it ends, but a run killed with SIGKILL (OOM, a preempted VM, ``kill -9``) cannot, and
its partial downloads (``.part-*``, gigabytes at real file sizes) would stay forever.

So every work folder carries an ``owner.json`` (host, pid, the process's start time), and
``clean_staging`` removes:

- work folders whose owner ran on this host and is no longer alive (the pid is gone, or is now
  another process: its start time differs);
- anything else (folders of other hosts, folders without an owner file, loose temporary files)
  once it is older than ``max_age`` (``MARKET_DATA_STAGING_MAX_AGE_HOURS``), by modification time.

Folders of live runs are never touched. ``raw_ticks`` cleans before it starts; ``market-data
clean-staging`` does it by hand (``--max-age-hours 0`` for anything not owned by a live run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

OWNER_FILE = "owner.json"
DEFAULT_MAX_AGE = timedelta(hours=24)


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_work_dir(staging: Path, prefix: str) -> Path:
    """A new work folder ``staging/prefix-<id>`` marked as owned by this process."""
    work = staging / f"{prefix}-{uuid.uuid4().hex[:12]}"
    work.mkdir(parents=True)
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}
    (work / OWNER_FILE).write_text(json.dumps(owner))
    return work


def _owner_is_dead(folder: Path) -> bool | None:
    """True/False for a folder owned by a process of this host; None when that cannot be known."""
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
        host, pid, start = owner["host"], int(owner["pid"]), owner.get("start")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return None
    if not _alive(pid):
        return True
    return start is not None and _process_start(pid) not in (None, start)


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except OSError:
        return 0.0


@dataclass
class CleanResult:
    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    """Entries of live runs, or too young to judge."""
    freed_bytes: int = 0


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.lstat().st_size
        except OSError:
            pass
    return total


def clean_staging(staging: Path, *, max_age: timedelta = DEFAULT_MAX_AGE) -> CleanResult:
    """Remove what dead runs left in ``staging`` (see the module docstring)."""
    result = CleanResult()
    if not staging.is_dir():
        return result
    now = time.time()
    for entry in sorted(staging.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            dead = _owner_is_dead(entry)
            if dead is False or (dead is None and _age(entry, now) < max_age.total_seconds()):
                result.kept.append(entry)
                continue
            size = _size(entry)
            shutil.rmtree(entry, ignore_errors=True)
        else:
            if _age(entry, now) < max_age.total_seconds():
                result.kept.append(entry)
                continue
            size = _size(entry)
            entry.unlink(missing_ok=True)
        if not entry.exists():
            result.removed.append(entry)
            result.freed_bytes += size
    return result


# --- `market-data clean-staging` ---------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="storage root (default: MARKET_DATA_ROOT)")
    parser.add_argument(
        "--max-age-hours",
        type=float,
        help="also remove entries not owned by a live run on this host once older than this "
        "(default: MARKET_DATA_STAGING_MAX_AGE_HOURS; 0: all of them)",
    )


def run(args: argparse.Namespace) -> int:
    from market_data_assets.settings import Settings, SettingsError
    from market_data_assets.storage import open_store

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"market-data clean-staging: error: {exc}", file=sys.stderr)
        return 2
    hours = settings.staging_max_age_hours if args.max_age_hours is None else args.max_age_hours
    if hours < 0:
        print(f"market-data clean-staging: error: --max-age-hours {hours} must be >= 0", file=sys.stderr)
        return 2
    staging = open_store(args.root or settings.root).staging_dir()
    result = clean_staging(staging, max_age=timedelta(hours=hours))
    for path in result.removed:
        print(f"removed {path}")
    print(
        f"{staging}: removed {len(result.removed)} entries ({result.freed_bytes:,} bytes), "
        f"kept {len(result.kept)} (live runs, or younger than {hours:g} h)"
    )
    return 0
