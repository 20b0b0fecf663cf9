"""Inside a container's fresh mount namespace: mount its volumes, join its cgroups, exec it.

Run as ``unshare --mount --propagation private -- python -m kubegym_localcluster.node.launch
SPEC -- ARGV...``. Two rules keep the host exactly as it was:

* **Sources are opened before the first mount.** Every volume source is opened (``O_PATH``)
  first and mounted from that descriptor, so a mount over /tmp cannot hide a source that lives
  under /tmp (the state folder may well be there). Whether a mount is a file or a directory is
  decided from the descriptor (``fstat``), never from a path an earlier mount may have hidden.
* **Nothing is created on the host.** A ``mountPath`` that does not exist on the host (say
  ``/var/run/secrets/kubernetes.io/serviceaccount`` or ``/dev/termination-log``) is created
  inside an overlay: the deepest existing ancestor gets an overlayfs whose lower layer is the
  host's directory and whose upper layer lives on a tmpfs private to this container, and the
  mounts that lived below that ancestor are bound back from descriptors opened beforehand. The
  host never sees the new directories or files, so nothing is left behind after ``make down``
  and two local nodes on one machine never share a mount point.

The only paths written are the container's own scratch folder (a tmpfs, under the pod's folder
in the state directory) and the cgroup files the worker prepared.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import stat
import sys
from dataclasses import dataclass

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount(source: str, target: str, flags: int, fstype: str | None = None, data: str | None = None) -> None:
    rc = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _bind_fd(fd: int, is_dir: bool, target: str) -> None:
    """Bind what ``fd`` refers to onto ``target``, without a path to the source.

    A directory is bound from the working directory after ``fchdir`` (so it needs no /proc,
    which an overlay of / would hide); a file through its ``/proc/self/fd`` magic link.
    """
    if is_dir:
        os.fchdir(fd)
        _mount(".", target, MS_BIND | MS_REC)
    else:
        _mount(f"/proc/self/fd/{fd}", target, MS_BIND | MS_REC)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str) -> list[str]:
    """The mount points of a ``/proc/self/mountinfo`` text, in its order (parents first)."""
    return [_unescape(line.split()[4]) for line in mountinfo.splitlines() if line.strip()]


def _under(path: str, ancestor: str) -> bool:
    return ancestor == "/" or path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def submounts(points: list[str], ancestor: str) -> list[str]:
    """The top-level mounts strictly below ``ancestor`` (each brings its own children with MS_REC)."""
    below = [p for p in dict.fromkeys(points) if p != ancestor and _under(p, ancestor)]
    return [p for p in below if not any(q != p and _under(p, q) for q in below)]


def deepest_existing(path: str) -> str:
    """The real path of the deepest ancestor of ``path`` that exists."""
    p = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(p):
        p = os.path.dirname(p)
    return os.path.realpath(p)


def mount_of(path: str, points: list[str]) -> str:
    """The mount point of the filesystem that holds ``path`` (the longest one above it)."""
    return max((p for p in points if _under(path, p)), key=len, default="/")


def overlay_roots(targets: list[str], exists: dict[str, bool], points: list[str]) -> list[str]:
    """Ancestors to overlay, outermost first, so that every missing target is created off the host.

    A target below an earlier target is created inside that earlier mount (a pod volume), so
    it needs no overlay. An ancestor on the same mount as another, outer one is covered by the
    outer overlay; one on a mount of its own (``/dev`` below ``/``) needs its own overlay, since
    an overlay never reaches into the mounts below its root.
    """
    roots: list[str] = []
    for i, t in enumerate(targets):
        if exists[t] or any(_under(t, earlier) for earlier in targets[:i]):
            continue
        roots.append(deepest_existing(t))
    roots = sorted(dict.fromkeys(roots), key=lambda r: (r.count("/") if r != "/" else 0, r))
    kept: list[str] = []
    for r in roots:
        if not any(_under(r, q) and mount_of(r, points) == mount_of(q, points) for q in kept):
            kept.append(r)
    return kept


@dataclass
class _Source:
    fd: int
    is_dir: bool
    target: str
    read_only: bool


def _overlay(root: str, scratch: str, index: int) -> None:
    """An overlay of ``root`` whose writes land on the tmpfs at ``scratch``.

    The mounts below ``root`` are bound back from descriptors opened before the overlay hid
    them. An overlay of ``/`` itself is assembled at ``<scratch>/rootfs`` and entered with
    ``chroot``: a mount stacked on the root directory is never reached by path lookups.
    """
    with open("/proc/self/mountinfo") as f:
        # The scratch tmpfs is bound back too (later overlays keep their upper layers on it),
        # except into a new root assembled inside it.
        keep = [p for p in submounts(mount_points(f.read()), root) if root != "/" or not _under(p, scratch)]
    kept = []
    for p in keep:
        try:
            fd = os.open(p, os.O_PATH)
        except OSError:
            continue
        kept.append((p, fd, stat.S_ISDIR(os.fstat(fd).st_mode)))
    upper, work = os.path.join(scratch, f"upper{index}"), os.path.join(scratch, f"work{index}")
    os.makedirs(upper)
    os.makedirs(work)
    at = os.path.join(scratch, "rootfs") if root == "/" else root
    os.makedirs(at, exist_ok=True)
    _mount("overlay", at, 0, "overlay", f"lowerdir={root},upperdir={upper},workdir={work}")
    for p, fd, is_dir in kept:
        try:
            _bind_fd(fd, is_dir, at + p if root == "/" else p)
        finally:
            os.close(fd)
    if root == "/":
        # The scratch tmpfs itself (not the new root inside it) stays reachable for the
        # overlays of inner mounts that follow.
        os.makedirs(at + scratch, exist_ok=True)
        _mount(scratch, at + scratch, MS_BIND)
        os.chroot(at)
        os.chdir("/")


def _make_target(target: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()


def main(argv: list[str]) -> None:
    sep = argv.index("--")
    spec = json.loads(argv[1])
    command = argv[sep + 1 :]
    for cgroup in spec.get("cgroups") or []:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    sources = []
    for m in spec["mounts"]:
        fd = os.open(m["source"], os.O_PATH)
        sources.append(_Source(fd, stat.S_ISDIR(os.fstat(fd).st_mode), m["target"], bool(m.get("readOnly"))))
    workdir = spec.get("workingDir")
    targets = [s.target for s in sources] + ([workdir] if workdir else [])
    with open("/proc/self/mountinfo") as f:
        points = mount_points(f.read())
    roots = overlay_roots(targets, {t: os.path.exists(t) for t in targets}, points)
    if roots:
        scratch = spec["scratch"]
        os.makedirs(scratch, exist_ok=True)
        _mount("tmpfs", scratch, 0, "tmpfs", "mode=0700,size=16m")
        for i, root in enumerate(roots):
            _overlay(root, scratch, i)
    for s in sources:
        existing = os.path.exists(s.target)
        if existing and os.path.isdir(s.target) != s.is_dir:
            kind = "a directory" if s.is_dir else "a file"
            print(f"mount {s.target}: the volume is {kind} and the mountPath is not", file=sys.stderr)
            sys.exit(128)
        _make_target(s.target, s.is_dir)
        _bind_fd(s.fd, s.is_dir, s.target)
        if s.read_only:
            _mount("none", s.target, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(s.fd)
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
    else:
        os.chdir("/")
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"exec {command[0]}: {e}", file=sys.stderr)
        sys.exit(128)


if __name__ == "__main__":
    main(sys.argv)
