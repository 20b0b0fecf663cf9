"""The image rule: which container images the local node can run, and as what.

There is no container runtime here. An image whose repository is one of kubegym's own
(``ghcr.io/kubegym/kubegym-runner``, ``kubegym/kubegym-operator``, any registry, any
tag) runs in the Python environment the node itself runs in, with this repository's
sources first on ``PYTHONPATH`` — what the image would contain, built from the same
tree. The sources are mounted read-only into every such container at ``/opt/kubegym/src``
(the image's own filesystem, as it were), so no pod volume can hide them: a checkout under
``/tmp`` is not shadowed by a pod's ``/tmp`` emptyDir, which would silently leave the
container with the shared environment's installed copy of the packages, as old as that
environment. The image's entrypoint is the one its Dockerfile declares. Any other image fails
to "pull" with ``ErrImagePull``, as it would on a node that cannot reach a registry.

Packages a platform installs into its runner image (a custom environment, say) have a place
too: ``<state>/node/site/``, when it exists, is mounted read-only at ``/opt/kubegym/site`` in
every such container and put on ``PYTHONPATH`` after the sources — the image's site-packages, as
it were. The tests put their custom environment modules there.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import layout

#: Where a local image's sources appear inside its containers, and which folders of the checkout.
SOURCE_ROOT = "/opt/kubegym/src"
SOURCE_DIRS = ("api", "operator", "runner")
#: Where the node's extra packages (``<state>/node/site``) appear inside those containers.
SITE_ROOT = "/opt/kubegym/site"

#: Repository basename → the ENTRYPOINT of its Dockerfile (kept equal by a test).
ENTRYPOINTS: dict[str, list[str]] = {
    "kubegym-runner": ["kubegym-runner"],
    "kubegym-operator": ["kubegym-operator"],
}


@dataclass(frozen=True)
class LocalImage:
    image: str
    entrypoint: list[str]

    @property
    def image_id(self) -> str:
        return f"local://{self.image}"

    @property
    def source_mounts(self) -> list[tuple[Path, str]]:
        """(checkout folder, path in the container) of the sources the image holds."""
        return [(layout.REPO / d, f"{SOURCE_ROOT}/{d}") for d in SOURCE_DIRS]


class ImageNotAvailableError(Exception):
    pass


def repository_basename(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def resolve(image: str) -> LocalImage:
    base = repository_basename(image)
    if base not in ENTRYPOINTS:
        raise ImageNotAvailableError(
            f"image {image!r} is not available on the local node: it runs only kubegym's own images "
            f"({', '.join(sorted(ENTRYPOINTS))}, any registry and tag) in its Python environment"
        )
    return LocalImage(image, ENTRYPOINTS[base])


def site_dir(node_dir: Path) -> Path:
    """The node's extra packages folder (``<state>/node/site``)."""
    return node_dir / "site"


def site_mounts(node_dir: Path) -> list[tuple[Path, str]]:
    """(folder, path in the container) of the node's extra packages, if it has any."""
    site = site_dir(node_dir)
    return [(site, SITE_ROOT)] if site.is_dir() else []


def base_environment(site: bool = False) -> dict[str, str]:
    """What a process of a local image starts from, before the pod's own env (``site``: the
    extra packages are mounted, and on the path after the sources)."""
    venv_bin = str(Path(sys.executable).parent)
    paths = [f"{SOURCE_ROOT}/{d}" for d in SOURCE_DIRS] + ([SITE_ROOT] if site else [])
    return {
        "PATH": os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
        "HOME": "/root",
    }
