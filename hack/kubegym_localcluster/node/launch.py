"""Inside a container's fresh mount namespace: mount its volumes, join its cgroup, exec it.

Run as ``unshare --mount --propagation private -- python -m kubegym_localcluster.node.launch
SPEC -- ARGV...``. Every volume source is opened *before* the first mount, and mounted from
``/proc/self/fd/N``, so a mount over /tmp cannot hide a source that lives under /tmp.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount(source: str, target: str, flags: int) -> None:
    if _libc.mount(source.encode(), target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def main(argv: list[str]) -> None:
    sep = argv.index("--")
    spec = json.loads(argv[1])
    command = argv[sep + 1 :]
    if spec.get("cgroup"):
        with open(os.path.join(spec["cgroup"], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    mounts = spec["mounts"]
    fds = [os.open(m["source"], os.O_PATH) for m in mounts]
    for m, fd in zip(mounts, fds, strict=True):
        target = m["target"]
        if os.path.isdir(m["source"]):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        _mount(f"/proc/self/fd/{fd}", target, MS_BIND | MS_REC)
        if m.get("readOnly"):
            _mount("none", target, MS_BIND | MS_REMOUNT | MS_RDONLY)
    for fd in fds:
        os.close(fd)
    workdir = spec.get("workingDir")
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"exec {command[0]}: {e}", file=sys.stderr)
        sys.exit(128)


if __name__ == "__main__":
    main(sys.argv)
