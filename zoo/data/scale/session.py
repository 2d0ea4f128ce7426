"""The Ray of a dataset job's driver, and the Ray processes a killed driver left behind (Linux /proc)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo.data.scale.outputs import _write_text_atomic
from zoo.data.scale.plan import _one_line
from zoo.errors import require

RAY_RECORD = "_ray.json"  # the local Ray session of the driver running the job
STOP_ROUNDS = 3  # scans of /proc for the session's processes while stopping them
KILL_WAIT = 5.0  # seconds for SIGKILLed processes to be gone


# -- the driver ---------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, *,
                record: str | os.PathLike | None = None) -> Iterator[Any]:
    """Ray for the job: the running session if any, else a cluster at ``address``, else a local one.

    A session this function started (or connected) is shut down when the job ends. A local Ray it starts is
    recorded in the folder ``record`` (``_ray.json``: this driver, the session folder, Ray's pids) until then,
    so that a later run can stop what a killed driver left running (:func:`stop_stale_ray`).
    """
    ray = require("ray", extra="scale", purpose="dataset jobs")
    if ray.is_initialized():
        yield ray
        return
    recorded = None
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
        recorded = _record_ray_session(ray, Path(record)) if record is not None else None
    try:
        yield ray
    finally:
        ray.shutdown()
        if recorded is not None:
            recorded.unlink(missing_ok=True)


# -- Ray processes a killed driver left behind (Linux /proc) --------------------------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """The process's state letter and start time (clock ticks since boot) from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _started(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def _alive(pid: int, started: int | None) -> bool:
    """Whether ``pid`` still runs the process that started at ``started`` (not a later one given the same pid)."""
    stat = _stat(pid)
    return stat is not None and stat[1] == started and stat[0] not in ("Z", "X")


def _uses(pid: int, folder: str) -> bool:
    """Whether the process has a file of ``folder`` open (Ray's processes keep their session's logs open)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    prefix = folder.rstrip("/") + "/"
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def _record_ray_session(ray, output: Path) -> Path | None:
    """Write ``<output>/_ray.json``: this driver and the local Ray session it started. None where Ray's layout
    is not the one known here (the record is best effort: the job runs all the same)."""
    try:
        node = ray._private.worker._global_node
        pids = [p.process.pid for procs in node.all_processes.values() for p in procs if p.process is not None]
        facts = {"driver": os.getpid(), "driver_started": _started(os.getpid()),
                 "session_dir": node.get_session_dir_path(), "address": node.gcs_address,
                 "pids": {str(pid): _started(pid) for pid in pids}}
    except Exception:  # noqa: BLE001 - a private Ray API: a change in it must not stop the job
        return None
    path = output / RAY_RECORD
    _write_text_atomic(path, json.dumps(facts, indent=1, sort_keys=True))
    return path


def _session_users(session: str, recorded: dict[int, int | None]) -> list[tuple[int, int | None]]:
    """This user's processes that have a file of the Ray session's folder open or are recorded and still run."""
    me, uid = os.getpid(), os.getuid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
        except OSError:
            continue
        if (pid in recorded and _alive(pid, recorded[pid])) or _uses(pid, session):
            found.append((pid, _started(pid)))
    return found


def _terminate(procs: list[tuple[int, int | None]], wait: float) -> None:
    """SIGTERM, then SIGKILL to those still running after ``wait`` seconds; returns once all are gone (or
    KILL_WAIT seconds after the SIGKILL, for one stuck in the kernel)."""
    def signal_all(signum: int) -> None:
        for pid, started in procs:
            if _alive(pid, started):
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)

    def wait_gone(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while any(_alive(pid, started) for pid, started in procs) and time.monotonic() < deadline:
            time.sleep(0.05)

    signal_all(signal.SIGTERM)
    wait_gone(wait)
    signal_all(signal.SIGKILL)
    wait_gone(KILL_WAIT)


def stop_stale_ray(output: str | os.PathLike, *, wait: float = 5.0) -> list[int]:
    """Stop the Ray processes that a killed driver of a job into ``output`` left running; returns their pids.

    ``<output>/_ray.json`` names the driver and its local Ray session. While that driver runs, nothing is done;
    once it is gone, every process of this user that has a file of the session's folder open (Ray's GCS,
    raylet, agents and workers keep their logs there), and every recorded pid still running the process
    recorded, is sent SIGTERM, then SIGKILL after ``wait`` seconds; a warning names them. Linux only (/proc).
    """
    path = Path(output) / RAY_RECORD
    if not path.exists() or not Path("/proc/self/stat").exists():
        return []
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        driver, session = int(record["driver"]), str(record["session_dir"])
        recorded = {int(pid): started for pid, started in dict(record.get("pids", {})).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"{path}: unreadable Ray session record ({_one_line(exc)}); ignored", UserWarning,
                      stacklevel=2)
        path.unlink(missing_ok=True)
        return []
    if driver == os.getpid() or _alive(driver, record.get("driver_started")):
        return []  # its driver still runs (or is this process): not stale
    stale: list[tuple[int, int | None]] = []
    for _ in range(STOP_ROUNDS):  # again while any are left: a raylet being stopped may start a worker first
        found = [p for p in _session_users(session, recorded) if p not in stale]
        if not found:
            break
        _terminate(found, wait)
        stale += found
    path.unlink(missing_ok=True)
    if stale:
        warnings.warn(f"stopped {len(stale)} Ray processes (pids {', '.join(str(p) for p, _ in stale)}) left "
                      f"running by a killed job into {output} (driver pid {driver}, Ray session {session})",
                      UserWarning, stacklevel=2)
    return [pid for pid, _ in stale]
