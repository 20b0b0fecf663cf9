"""``kubegym-runner``: the runner image's one entry point.

    kubegym-runner train [--config FILE]
    kubegym-runner evaluate [--config FILE]
    kubegym-runner report [--config FILE]

The configuration is the JSON the operator renders into ``KUBEGYM_CONFIG`` (or a file,
for local use). Exit codes tell the Job's ``podFailurePolicy`` what happened:

* 0: done (for ``train``: the termination message ends with the run's
  :class:`~kubegym_api.finalreport.FinalReport`, where the operator finds the result if the
  status patch never got through; for ``evaluate``: at least one model x environment entry
  was evaluated; failed entries are reported in the Benchmark's status); 42 (:data:`EXIT_USER_ERROR`):
  the spec cannot work (for ``evaluate``: no entry could be evaluated), do not retry;
* 43 (:data:`EXIT_INFRA_ERROR`), 44 (:data:`EXIT_STORAGE_ERROR`): retry;
* 128 + signal (143): stopped by SIGTERM after saving a checkpoint;
* 1: an unexpected error (a bug, or an error in a custom environment).

Each subcommand first exports ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` where unset (the pod's CPU
share; 1 for ``evaluate``), before anything imports numpy or torch: this module and what it
imports at the top stay free of both (a unit test checks it).

On failure a one-line message goes to stderr and to the termination log
(``/dev/termination-log`` when the kubelet provides it, or ``$KUBEGYM_TERMINATION_LOG``),
where the operator reads it for the run's conditions and events; credentials are redacted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from pydantic import BaseModel, ValidationError

from kubegym_api.envvars import CONFIG_ENV
from kubegym_api.finalreport import FinalReport, final_report_message
from kubegym_api.runnerconfig import EvaluateConfig, ExperimentReportConfig, TrainConfig
from kubegym_runner.compute import export_thread_env
from kubegym_runner.errors import RunnerError, TerminatedError, UserError
from kubegym_runner.logs import redact, setup_logging

log = logging.getLogger("kubegym_runner")

#: Overrides where the termination message goes (tests, local runs).
TERMINATION_LOG_ENV = "KUBEGYM_TERMINATION_LOG"
#: Kubernetes' default ``terminationMessagePath``.
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")
#: The kubelet keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096
#: Exit code of errors nobody classified.
EXIT_UNEXPECTED = 1

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class _Parser(argparse.ArgumentParser):
    """Argument errors are the renderer's fault and retrying cannot fix them."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


def termination_log_path() -> Path | None:
    """Where to write the termination message: the override, or the kubelet's file if present.

    The default path is only written when it already exists (the kubelet creates it), so a
    local run never litters ``/dev``.
    """
    override = os.environ.get(TERMINATION_LOG_ENV)
    if override:
        return Path(override)
    if DEFAULT_TERMINATION_LOG.is_file() and os.access(DEFAULT_TERMINATION_LOG, os.W_OK):
        return DEFAULT_TERMINATION_LOG
    return None


def write_termination_message(message: str) -> None:
    """Best effort: the message for ``kubectl describe`` and the operator."""
    path = termination_log_path()
    if path is None:
        return
    data = redact(message).encode()[:TERMINATION_MESSAGE_LIMIT]
    try:
        path.write_bytes(data)
    except OSError as e:
        log.debug("cannot write termination message to %s: %s", path, e)


def _summarize(error: ValidationError) -> str:
    """Field paths and reasons, without echoing input values."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in error.errors(include_input=False, include_url=False)[:5]
    ]
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def load_config(model: type[ConfigT], path: str | None) -> ConfigT:
    """Parse the config from ``path`` or ``$KUBEGYM_CONFIG``; any problem is a user error."""
    if path:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise UserError(f"cannot read config file {path}: {e.strerror}") from e
    else:
        text = os.environ.get(CONFIG_ENV, "")
        if not text.strip():
            raise UserError(f"no configuration: set {CONFIG_ENV} or pass --config FILE")
    try:
        return model.model_validate_json(text)
    except ValidationError as e:
        raise UserError(f"invalid {model.__name__}: {_summarize(e)}") from e


def _train(args: argparse.Namespace) -> int:
    export_thread_env()  # before numpy and torch load: OpenMP/MKL size their pools once
    from kubegym_runner.progress import KubernetesStatusWriter, ProgressReporter
    from kubegym_runner.storage import Storage
    from kubegym_runner.train import train

    config = load_config(TrainConfig, args.config)
    storage = Storage.from_config(config.storage)
    writer = KubernetesStatusWriter.connect(config.report_to) if config.report_to else None
    reporter = ProgressReporter(
        writer, config.report_interval_seconds, final_timeout=config.final_report_timeout_seconds
    )
    result = train(config, storage, reporter)
    summary = (
        f"trained {result.timesteps} timesteps; final evaluation {result.mean_reward} "
        f"+/- {result.std_reward} over {result.episodes} episodes; model {result.model_uri}"
    )
    total = reporter.progress.total_timesteps if reporter.progress is not None else config.total_timesteps
    report = FinalReport(result=result, total_timesteps=total, checkpoints=reporter.checkpoints)
    write_termination_message(final_report_message(summary, report, TERMINATION_MESSAGE_LIMIT))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    export_thread_env(cpus=1)  # one thread per policy call, as configure_inference sets torch
    from kubegym_runner.evaluate import BenchmarkReporter, evaluate
    from kubegym_runner.progress import KubernetesStatusWriter
    from kubegym_runner.storage import Storage

    config = load_config(EvaluateConfig, args.config)
    storage = Storage.from_config(config.storage)
    writer = KubernetesStatusWriter.connect(config.report_to) if config.report_to else None
    outcome = evaluate(config, storage, BenchmarkReporter(writer, config.report_interval_seconds))
    best = outcome.ranking.models[0] if outcome.ranking.models else None
    leader = f"best {best.model} ({outcome.ranking.statistic} {best.score})" if best else "no model ranked"
    write_termination_message(
        f"evaluated {len(outcome.entries) - len(outcome.failed)} of {len(outcome.entries)} entries; {leader}; "
        f"results {outcome.artifacts.results}"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    export_thread_env()
    from kubegym_runner.progress import KubernetesStatusWriter
    from kubegym_runner.storage import Storage
    from kubegym_runner.study import run_report

    config = load_config(ExperimentReportConfig, args.config)
    storage = Storage.from_config(config.storage)
    writer = KubernetesStatusWriter.connect(config.report_to) if config.report_to else None
    outcome = run_report(config, storage, writer)
    best = outcome.best
    leader = (
        f"best {best.configuration} ({best.summary}): {best.score} [{best.ci_lower}, {best.ci_upper}]" if best else ""
    )
    write_termination_message(f"report of {len(config.runs)} runs; {leader}; {outcome.files.report_json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per runner job kind."""
    parser = _Parser(prog="kubegym-runner", description="kubegym's RL runner.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="Train an agent (config: TrainConfig).")
    train.add_argument("--config", metavar="FILE", help=f"config JSON file (default: ${CONFIG_ENV})")
    train.set_defaults(handler=_train)
    evaluate = commands.add_parser("evaluate", help="Evaluate and compare models (config: EvaluateConfig).")
    evaluate.add_argument("--config", metavar="FILE", help=f"config JSON file (default: ${CONFIG_ENV})")
    evaluate.set_defaults(handler=_evaluate)
    report = commands.add_parser(
        "report", help="Write an Experiment's report from its runs (config: ExperimentReportConfig)."
    )
    report.add_argument("--config", metavar="FILE", help=f"config JSON file (default: ${CONFIG_ENV})")
    report.set_defaults(handler=_report)
    return parser


def _fail(message: str, exit_code: int, what: str = "error") -> int:
    message = redact(" ".join(message.split()))  # one line
    print(f"kubegym-runner: {what}: {message}", file=sys.stderr, flush=True)
    write_termination_message(message)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    setup_logging()
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except TerminatedError as e:
        return _fail(str(e), e.exit_code, "stopped")
    except RunnerError as e:
        log.error("%s: %s", type(e).__name__, e)
        return _fail(str(e), e.exit_code)
    except Exception as e:  # the last line of defence must classify everything
        log.exception("unexpected error")
        return _fail(f"unexpected error: {type(e).__name__}: {e}", EXIT_UNEXPECTED)


if __name__ == "__main__":
    sys.exit(main())
