"""The Dockerfiles against pyproject.toml and the local node's image rule, so that neither can
drift silently where there is no Docker engine to build them: which extras each image installs,
its ENTRYPOINT (a console script, the one the local node runs), its user, its pins."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubegym_localcluster import layout
from kubegym_localcluster.node.images import ENTRYPOINTS, repository_basename

PYPROJECT: dict[str, Any] = tomllib.loads((layout.REPO / "pyproject.toml").read_text())


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


CONSTRAINTS = {
    normalize(name): version
    for name, _, version in (
        line.partition("==") for line in (layout.REPO / "hack" / "constraints.txt").read_text().splitlines()
    )
    if version and not name.startswith("#")
}
#: Dockerfile → the image repository basename it builds (what the local node's rule keys on).
IMAGES = {"Dockerfile.operator": "kubegym-operator", "Dockerfile.runner": "kubegym-runner"}
#: Extras each image installs; the operator image must not pull the runner's (torch).
EXTRAS = {"Dockerfile.operator": {"operator"}, "Dockerfile.runner": {"runner"}}
NON_ROOT_UID = 65532


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == instruction]


@dataclass
class Dockerfile:
    args: dict[str, str]  # global ARGs (before the first FROM) and their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def chain(self, stage: Stage) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first; ``${VARIANT}`` resolved to its default."""
        out = [stage]
        while True:
            base = re.sub(r"\$\{(\w+)\}", lambda m: self.args.get(m.group(1), m.group(0)), out[-1].base)
            parent = next((s for s in self.stages if s.name == base), None)
            if parent is None:
                return out
            out.append(parent)

    def final_instructions(self, instruction: str) -> list[str]:
        """An instruction as the final image inherits it (the last one wins)."""
        found: list[str] = []
        for stage in reversed(self.chain(self.final)):
            found += stage.all(instruction)
        return found


def parse(path: Path) -> Dockerfile:
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, f"{path.name}: dangling line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages and instruction == "ARG":
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        else:
            assert stages, f"{path.name}: {instruction} before FROM"
            stages[-1].instructions.append((instruction, rest.strip()))
    return Dockerfile(args, stages)


def _installed_extras(dockerfile: Dockerfile) -> set[str]:
    """Extras of every `pip install ".[a,b]"` of the local project in the build."""
    extras: set[str] = set()
    for stage in dockerfile.stages:
        for run in stage.all("RUN"):
            for match in re.finditer(r"""pip install [^&;]*?["']?\.\[([\w,-]+)\]["']?""", run):
                extras |= set(match.group(1).split(","))
    return extras


def _requirement_names(requirements: list[str]) -> set[str]:
    return {normalize(re.split(r"[\[=<>!~; ]", r, maxsplit=1)[0]) for r in requirements}


@pytest.fixture(params=sorted(IMAGES), ids=sorted(IMAGES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, Dockerfile]:
    name: str = request.param
    return name, parse(layout.REPO / name)


def test_installs_the_extras_of_its_role(dockerfile: tuple[str, Dockerfile]) -> None:
    name, df = dockerfile
    extras = _installed_extras(df)
    assert extras == EXTRAS[name], f"{name} installs extras {extras}"
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"]), "an extra pyproject.toml does not define"


def test_operator_image_has_no_torch() -> None:
    """What the operator image installs (the base dependencies and its extras) holds no torch
    nor anything of the runner's training stack."""
    project = PYPROJECT["project"]
    installed = set(project["dependencies"])
    for extra in _installed_extras(parse(layout.REPO / "Dockerfile.operator")):
        installed |= set(project["optional-dependencies"][extra])
    heavy = {"torch", "stable-baselines3", "sb3-contrib", "rl-zoo3", "gymnasium", "ale-py"}
    assert not _requirement_names(sorted(installed)) & heavy
    run = " ".join(parse(layout.REPO / "Dockerfile.operator").stage("build").all("RUN"))
    assert "pip show torch" in run, "the build no longer refuses an operator image with torch"


def test_entrypoint_is_the_console_script_the_local_node_runs(dockerfile: tuple[str, Dockerfile]) -> None:
    name, df = dockerfile
    (entrypoint,) = df.final.all("ENTRYPOINT") or df.final_instructions("ENTRYPOINT")[-1:]
    argv = json.loads(entrypoint)  # exec form: signals reach the process, no shell in between
    assert isinstance(argv, list) and argv
    scripts = PYPROJECT["project"]["scripts"]
    assert argv[0] in scripts, f"{name}: ENTRYPOINT {argv[0]} is not a [project.scripts] entry"
    image = IMAGES[name]
    assert repository_basename(f"ghcr.io/kubegym/{image}:0.1.0") == image
    assert ENTRYPOINTS[image] == argv, f"the local node runs {image} as {ENTRYPOINTS[image]}, the image as {argv}"
    assert set(ENTRYPOINTS) == set(IMAGES.values())


def test_console_scripts_point_at_real_functions() -> None:
    import importlib

    for script, target in PYPROJECT["project"]["scripts"].items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), script


def test_runs_as_non_root(dockerfile: tuple[str, Dockerfile]) -> None:
    name, df = dockerfile
    users = df.final_instructions("USER")
    assert users, f"{name}: no USER in the final image"
    uid, _, gid = users[-1].partition(":")
    assert uid == str(NON_ROOT_UID) and gid == str(NON_ROOT_UID), f"{name}: USER {users[-1]} (numeric, non-root)"
    env = " ".join(df.final_instructions("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env, f"{name}: would write .pyc files next to a read-only root"
    assert re.search(r"HOME=/(tmp|home/kubegym)\b", env), f"{name}: HOME must be a path the pod mounts writable"


def test_bases_are_pinned(dockerfile: tuple[str, Dockerfile]) -> None:
    name, df = dockerfile
    version = df.args.get("PYTHON_VERSION", "")
    assert re.fullmatch(r"3\.\d+\.\d+", version), f"{name}: PYTHON_VERSION={version!r} is not a full version"
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, version.split("."))) >= tuple(map(int, floor.split(".")))
    for stage in df.stages:
        if stage.name and any(s.name == stage.base for s in df.stages):
            continue
        if "${VARIANT}" in stage.base:
            continue
        assert stage.base == "python:${PYTHON_VERSION}-slim-bookworm", f"{name}: FROM {stage.base}"
    other = parse(layout.REPO / ({*IMAGES} - {name}).pop())
    assert other.args["PYTHON_VERSION"] == version, "both images run the same Python"


def test_installs_are_constrained_by_the_lock(dockerfile: tuple[str, Dockerfile]) -> None:
    """Every pip install of the project uses hack/constraints.txt, and the lock agrees with the
    pins of pyproject.toml for everything the image installs."""
    name, df = dockerfile
    project_installs = [
        cmd
        for stage in df.stages
        for run in stage.all("RUN")
        for cmd in run.split("&&")
        if re.search(r"pip install .*\.\[", cmd)
    ]
    assert project_installs
    for cmd in project_installs:
        assert "-c hack/constraints.txt" in cmd, f"{name}: unconstrained install: {cmd.strip()}"
    assert "hack/constraints.txt hack/constraints.txt" in df.stage("build").all("COPY")
    requirements = list(PYPROJECT["project"]["dependencies"])
    for extra in EXTRAS[name]:
        requirements += PYPROJECT["project"]["optional-dependencies"][extra]
    for requirement in requirements:
        pkg, _, pin = re.sub(r"\[.*?\]", "", requirement).partition("==")
        assert pin, f"pyproject.toml: {requirement} is not pinned"
        locked = CONSTRAINTS.get(normalize(pkg))
        assert locked == pin, f"pyproject.toml pins {pkg}=={pin}, hack/constraints.txt {locked}"


def test_copies_every_package_setuptools_installs(dockerfile: tuple[str, Dockerfile]) -> None:
    name, df = dockerfile
    copies = [shlex.split(c)[0] for c in df.stage("build").all("COPY")]
    where = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]
    for folder in where:
        packages = [p for p in (layout.REPO / folder).glob("kubegym_*") if (p / "__init__.py").is_file()]
        for package in packages:
            assert f"{folder}/{package.name}" in copies, f"{name}: {folder}/{package.name} is not copied"
    assert {"pyproject.toml", "README.md"} <= {tok for c in df.stage("build").all("COPY") for tok in shlex.split(c)}
    ignore = (layout.REPO / ".dockerignore").read_text().splitlines()
    for copied in copies:
        assert {f"!{copied}", f"!{copied}/"} & set(ignore), f".dockerignore leaves {copied} out of the build context"


def test_runner_variants() -> None:
    """VARIANT=cpu (default) takes PyTorch's CPU wheels at the locked version; cuda takes PyPI's."""
    df = parse(layout.REPO / "Dockerfile.runner")
    assert df.args["VARIANT"] == "cpu"
    run = " ".join(df.stage("build").all("RUN"))
    assert 'case "$VARIANT" in cpu|cuda)' in run
    assert "--index-url https://download.pytorch.org/whl/cpu" in run
    assert "sed -n 's/^torch==//p' hack/constraints.txt" in run and "torch" in CONSTRAINTS
    cpu_env = " ".join(df.stage("runtime-cpu").all("ENV"))
    cuda_env = " ".join(df.stage("runtime-cuda").all("ENV"))
    assert "NVIDIA" not in cpu_env
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in cuda_env
    assert df.final.base == "runtime-${VARIANT}"


def test_make_images_builds_both_images_and_both_variants() -> None:
    makefile = (layout.REPO / "Makefile").read_text()
    recipe = makefile.split("\nimages:", 1)[1].split("\n\n", 1)[0]
    for dockerfile_name, image in IMAGES.items():
        assert re.search(rf"build -f {re.escape(dockerfile_name)} .*-t \S*/{image}:", recipe), dockerfile_name
    assert "--build-arg VARIANT=cpu" in recipe and "--build-arg VARIANT=cuda" in recipe
