"""Daemon processes of the local cluster: start detached, record a pidfile, stop for sure.

Every process the scripts start gets its own session (so its whole group can be
signalled) and a pidfile under ``<state>/pids``; ``down`` signals those groups and
waits until they are gone, so nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it has exited for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is pgid (the leader may already be gone)."""
    members = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(d.name))
    return members


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Supervisor:
    """Knows the daemons of one state directory by name."""

    def __init__(self, state: Path) -> None:
        self.pids = state / "pids"
        self.logs = state / "logs"

    def pid(self, name: str) -> int | None:
        """The recorded pid of a daemon if that process still runs the recorded program."""
        f = self.pids / f"{name}.pid"
        if not f.exists():
            return None
        pid_s, _, marker = f.read_text().partition("\n")
        pid = int(pid_s)
        if _alive(pid) and marker.strip() in _cmdline(pid):
            return pid
        return None

    def running(self, name: str) -> bool:
        return self.pid(name) is not None

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        if (pid := self.pid(name)) is not None:
            return pid
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        (self.pids / f"{name}.pid").write_text(f"{proc.pid}\n{argv[0]}\n")
        return proc.pid

    def stop(self, name: str, timeout: float = 15.0) -> None:
        pid = self.pid(name)
        if pid is not None:
            kill_group(pid, timeout)
        (self.pids / f"{name}.pid").unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.pids.glob("*.pid")) if self.pids.exists() else []


def kill_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group led by pid, SIGKILL it after timeout."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_members(pid):
                return
            time.sleep(0.1)
