"""``status.progress.usage``: the CPU time of the runner's process tree read from ``/proc`` (the
trainer, its reaped children, and live environment workers), on a made-up ``/proc`` and on this
machine's real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kubegym_runner.usage import UsageMeter, process_times, tree_cpu_seconds

TICKS = os.sysconf("SC_CLK_TCK")


def stat_line(pid: int, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0, comm: str = "py") -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    return f"{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0\n"


def fake_proc(tmp_path: Path, lines: dict[int, str]) -> Path:
    for pid, line in lines.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(line)
    (tmp_path / "self").mkdir()  # not a pid: ignored
    return tmp_path


def test_a_stat_line_whose_command_holds_spaces_and_parentheses() -> None:
    ppid, seconds = process_times(stat_line(7, 3, 2 * TICKS, TICKS, TICKS, 0, comm="a (b) c"), TICKS, reaped=True)
    assert (ppid, seconds) == (3, 4.0)
    assert process_times(stat_line(7, 3, 2 * TICKS, TICKS, TICKS, 0), TICKS, reaped=False)[1] == 3.0


def test_the_tree_sums_the_root_its_reaped_children_and_live_descendants(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {
            100: stat_line(100, 1, 10 * TICKS, 2 * TICKS, cutime=TICKS),  # the runner: 13 s with a reaped child
            101: stat_line(101, 100, 5 * TICKS, 0),  # an env worker
            102: stat_line(102, 101, TICKS, TICKS),  # its child
            200: stat_line(200, 1, 99 * TICKS, 0),  # someone else's process
        },
    )
    assert tree_cpu_seconds(100, proc) == 13 + 5 + 2
    assert tree_cpu_seconds(101, proc) == 7
    assert tree_cpu_seconds(999, proc) == 0.0  # gone
    assert tree_cpu_seconds(100, tmp_path / "missing") == 0.0


def test_a_busy_child_counts_on_the_real_proc() -> None:
    before = tree_cpu_seconds()
    # The child burns 0.5 s of CPU (its own clock: a loaded machine only makes it take longer), says
    # so, and stays alive until told: a live environment worker.
    burn = "import sys, time\nwhile time.process_time() < 0.5: pass\nprint('ready', flush=True)\nsys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    during = tree_cpu_seconds()
    child.communicate("", timeout=60)
    after = tree_cpu_seconds()  # reaped: in this process' cutime now
    assert during - before >= 0.4  # the child's 0.5 s, in clock ticks (utime and stime are each rounded down)
    assert after >= during - 0.05


def test_the_meter_files_it_under_the_pod_and_says_nothing_outside_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KUBEGYM_POD_NAME", "cartpole-train-abcde")
    usage = UsageMeter().measure()
    assert usage is not None and usage.pod == "cartpole-train-abcde" and usage.cpu_seconds > 0
    assert usage.gpu_utilization_percent is None  # no CUDA here
    monkeypatch.delenv("KUBEGYM_POD_NAME")
    assert UsageMeter().measure() is None
