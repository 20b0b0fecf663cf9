"""The runner's last words: a finished training run's result in its pod's termination message.

The runner patches its result onto the TrainingRun's status, and also writes it here: the
kubelet keeps the termination message in the pod's status, so when the API server was
unreachable at the end of training and the patch never arrived, the operator still finds the
result in the pod it watches, without access to storage. The runner writes the message with
:func:`final_report_message`; the operator reads it with :func:`parse_final_report`.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from kubegym_api.base import Model
from kubegym_api.trainingrun import CheckpointStatus, TrainingResult

#: Starts the line of a finished training runner's termination message that carries its
#: :class:`FinalReport` as JSON; the line before it is the summary for ``kubectl describe``.
FINAL_REPORT_PREFIX = "kubegym-final-report: "


class FinalReport(Model):
    """A finished training run as the runner reports it last: the content of ``status.result``
    (the same result ``final/manifest.json`` records), the newest checkpoints and the budget.

    The runner writes it into its pod's termination message as well as patching the status: the
    kubelet keeps the message in the pod's status, so when the API server was unreachable at the
    end of training and the status patch never arrived, the operator still finds the result in the
    pod it watches, without access to storage.
    """

    # An operator older than its runners ignores what it does not know rather than losing the report.
    model_config = ConfigDict(extra="ignore")

    result: TrainingResult = Field(description="The run's result, as status.result.")
    total_timesteps: int | None = Field(default=None, ge=1, description="The run's budget (status.progress).")
    checkpoints: CheckpointStatus | None = Field(default=None, description="The run's checkpoints at the end.")


def _utf8_prefix(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes."""
    return text.encode()[: max(limit, 0)].decode(errors="ignore")


def final_report_message(summary: str, report: FinalReport, limit: int) -> str:
    """A termination message of at most ``limit`` UTF-8 bytes: ``summary``, then the report line.

    The report matters more than the summary, so the summary is shortened first; if the report
    alone is too long (very long URIs), its checkpoints are dropped, and if it still does not fit,
    the message is the summary only (the operator then keeps waiting for the status patch).
    """
    summary = " ".join(summary.split())
    for candidate in (report, report.model_copy(update={"checkpoints": None})):
        line = FINAL_REPORT_PREFIX + candidate.model_dump_json(by_alias=True, exclude_none=True)
        room = limit - len(line.encode()) - 1  # the newline
        if room >= 0:
            head = _utf8_prefix(summary, room)
            return f"{head}\n{line}" if head else line
    return _utf8_prefix(summary, limit)


def parse_final_report(message: str | None) -> FinalReport | None:
    """The :class:`FinalReport` in a termination message, or ``None`` if it carries none (an
    error message, an older runner, a malformed or truncated line)."""
    for line in reversed((message or "").splitlines()):
        if line.startswith(FINAL_REPORT_PREFIX):
            try:
                return FinalReport.model_validate_json(line[len(FINAL_REPORT_PREFIX) :])
            except ValueError:
                return None
    return None
