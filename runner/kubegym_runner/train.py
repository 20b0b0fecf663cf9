"""The training loop of ``kubegym-runner train``.

1. Resolve the plan (algorithm, preset, hyperparameters, env): user errors fail here,
   before storage is touched.
2. Find where to start: the newest complete checkpoint of this run (a restarted pod
   resumes; only one whose manifest is this run's: its uid, algorithm, env and spaces), else
   ``resumeFrom`` (only one of the same algorithm and spaces: otherwise a UserError naming
   both, before training), else from scratch (:mod:`kubegym_runner.provenance`).
3. ``learn(total - done, reset_num_timesteps=False)``: timestep counts and schedules
   continue where the checkpoint left them. Callbacks checkpoint to S3 every
   ``checkpoint.everySteps`` (keeping the newest ``keepLast``), evaluate every
   ``evaluation.everySteps`` on a separate env (an evaluation that beats the best so far keeps
   its model in ``best/``: :mod:`kubegym_runner.best`), and report progress.
4. On SIGTERM: stop at the next step, checkpoint, exit ``128 + signal``.
   Throughout, the runner's log is kept in the run's folder (``logs/<attempt>.log``,
   :mod:`kubegym_runner.runlog`): every 30 s and once more at exit, SIGTERM included.
5. At the end: a last checkpoint, ``final/``, a final evaluation (``eval/final.json``),
   the result recorded in ``final/manifest.json``, and ``status.result`` (retried while the
   API server does not answer, until SIGTERM; the CLI also puts it in the termination message).

A segment resumed at step S is seeded with ``seed + S``: reproducible given where it
resumed, without replaying the first segment's random stream.

With ``spec.tracking.mlflow`` the run is also logged to MLflow (:mod:`kubegym_runner.tracking`):
SB3's scalars as they come from a background thread, the final evaluation, model and status at
the end, bounded in time; a tracking server that fails never fails the run.

Storage never stalls training: periodic checkpoints and the evaluation history are
serialised locally and uploaded beside the training loop by an
:class:`~kubegym_runner.uploads.Uploader` (newest state wins, manifest last, retries with
back-off); so is the best model. Only the SIGTERM checkpoint and the final model wait for S3 — for the upload in
progress, then for their own, bounded by a deadline — because the pod ends after them.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization

from kubegym_api.runnerconfig import TrainConfig
from kubegym_api.trainingrun import (
    CheckpointStatus,
    ComputeStatus,
    EvaluationConfig,
    EvaluationPoint,
    EvaluationResult,
    TrainingProgress,
    TrainingResult,
)
from kubegym_runner.algorithms import is_off_policy
from kubegym_runner.best import BestTracker, best_status, kept_on_resume
from kubegym_runner.callbacks import PeriodicCallback, ProgressCallback, StopOnTermination
from kubegym_runner.checkpoints import (
    MANIFEST_NAME,
    MODEL_NAME,
    REPLAY_BUFFER_NAME,
    VECNORMALIZE_NAME,
    Checkpoint,
    IncompleteCheckpointError,
    Manifest,
    RunLayout,
    download_folder,
    prune,
    read_manifest,
    scan,
    write_folder,
    write_manifest,
)
from kubegym_runner.compute import ThreadSettings, configure_threads, resolve_device
from kubegym_runner.curves import Curves
from kubegym_runner.envs import build_vec_env
from kubegym_runner.episodes import EpisodeStats, EvaluationInterruptedError, run_episodes
from kubegym_runner.errors import TerminatedError, UserError
from kubegym_runner.plan import TrainingPlan, build_plan
from kubegym_runner.progress import ProgressReporter, StorageReport, Throughput, make_progress
from kubegym_runner.provenance import Provenance, describe_space, foreign_reason, resume_mismatch
from kubegym_runner.runlog import RunLog, exit_line
from kubegym_runner.safeload import load_algorithm, load_replay_buffer
from kubegym_runner.signals import TerminationRequest
from kubegym_runner.storage import S3Uri, Storage
from kubegym_runner.tracking import Tracker, run_params
from kubegym_runner.uploads import Uploader
from kubegym_runner.usage import UsageMeter

log = logging.getLogger(__name__)

#: What loading a model archive of another algorithm, env or library version raises.
_LOAD_ERRORS = (TypeError, ValueError, KeyError, AttributeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError)
#: Offset of the evaluation env's seed from the training seed (distinct episodes).
EVAL_SEED_OFFSET = 1_000_003
EVALUATIONS_NAME = "evaluations.json"
FINAL_EVALUATION_NAME = "final.json"
#: Upload kinds: at most one of each is queued behind the upload in progress.
CHECKPOINT_UPLOADS = "checkpoint"
EVALUATION_UPLOADS = "evaluations"
BEST_UPLOADS = "best"
#: Seconds the SIGTERM checkpoint gets to reach S3 (the operator's default grace period is 60 s).
TERMINATION_UPLOAD_SECONDS = 40.0
#: Seconds the final checkpoint and model (and final evaluation) get to reach S3, retrying
#: while storage is down, before the run fails with a storage error (and the Job retries it).
FINAL_UPLOAD_SECONDS = 600.0
#: Seconds queued background uploads still get when the runner exits.
CLOSE_UPLOAD_SECONDS = 15.0
#: Seconds the MLflow run's end (last metrics, the model, its status) gets after a successful run...
TRACKING_FINISH_SECONDS = 120.0
#: ... and after a failed or terminated attempt (the grace period is short).
TRACKING_CLOSE_SECONDS = 10.0


@dataclass(frozen=True)
class StartPoint:
    """A downloaded, verified checkpoint to continue from."""

    checkpoint: Checkpoint
    directory: Path
    #: True for this run's own checkpoint (a restart), False for ``resumeFrom``.
    own: bool

    def file(self, name: str) -> Path | None:
        path = self.directory / name
        return path if name in self.checkpoint.manifest.objects and path.is_file() else None


def resolve_resume_folder(storage: Storage, uri: S3Uri) -> S3Uri:
    """The checkpoint folder ``resumeFrom`` names: the folder itself if it has a manifest,
    else, for a run's folder, its newest complete checkpoint or its ``final/``."""
    if read_manifest(storage, uri) is not None:
        return uri
    run = RunLayout(uri)
    complete = scan(storage, run.checkpoints).complete
    if complete:
        return complete[0].folder
    if read_manifest(storage, run.final) is not None:
        return run.final
    raise UserError(
        f"resumeFrom {uri}: no complete checkpoint there (no manifest.json, no complete checkpoints/<step>/, no final/)"
    )


class Trainer:
    """One attempt (pod) of a training run."""

    def __init__(
        self,
        config: TrainConfig,
        storage: Storage,
        reporter: ProgressReporter,
        termination: TerminationRequest,
        workdir: Path,
    ) -> None:
        self.config = config
        self.storage = storage
        self.reporter = reporter
        self.termination = termination
        self.workdir = workdir
        self.layout = RunLayout.of(config.storage.bucket, config.run_prefix)
        self.throughput = Throughput()
        self.last_checkpoint_step: int | None = None
        self.last_evaluation: EvaluationResult | None = None
        self.evaluations: list[dict[str, Any]] = []
        #: The best periodic evaluation so far; its model is (being) kept in ``best/``.
        self.best = BestTracker()
        self.resumed_from_step = 0
        self.wall_time_base = 0.0
        self.started = time.monotonic()
        self.progress_callback = ProgressCallback(reporter, self.progress)
        self._model: BaseAlgorithm | None = None
        self._stop_callback: StopOnTermination | None = None
        self._plan: TrainingPlan | None = None
        self._eval_env: VecEnv | None = None
        self._provenance: Provenance | None = None
        #: Steps of the run's folder that hold another run's complete checkpoint (an old-layout
        #: folder shared by name): never loaded, pruned or overwritten.
        self.foreign_steps: set[int] = set()
        #: Uploads beside the training loop; ``uploader.health()`` says whether storage answers.
        self.uploader = Uploader(storage)
        #: This attempt's log, kept in the run's folder (logs/<attempt>.log) periodically and at exit.
        self.run_log = RunLog.for_run(self.uploader, self.layout.root, workdir)
        #: SB3's logger writing TensorBoard event files, kept in the run's folder (tensorboard/).
        self.curves = Curves.for_run(self.uploader, self.layout.root, workdir)
        self.storage_report = StorageReport()
        self.compute: ComputeStatus | None = None
        self.usage = UsageMeter()
        #: The MLflow run (spec.tracking.mlflow), logged beside training; None without tracking.
        self.tracker: Tracker | None = None

    @property
    def model(self) -> BaseAlgorithm:
        assert self._model is not None, "model not built yet"
        return self._model

    @property
    def plan(self) -> TrainingPlan:
        assert self._plan is not None, "plan not built yet"
        return self._plan

    @property
    def provenance(self) -> Provenance:
        """This run as its manifests record it (uid, algorithm, env id, the model's spaces)."""
        assert self._provenance is not None, "provenance not known yet"
        return self._provenance

    # --- the run --------------------------------------------------------------------

    def run(self) -> TrainingResult:
        """Train to ``totalTimesteps`` (or until SIGTERM) and return the final result."""
        self.run_log.capture()  # from the first line; uploaded once storage has answered
        try:
            return self._run()
        finally:
            self.run_log.close(exit_line(sys.exc_info()[1]))  # a no-op once closed before the uploader

    def _run(self) -> TrainingResult:
        device = resolve_device(self.config.device)
        threads = configure_threads()
        self._plan = build_plan(self.config, cpus=threads.share.cpus)
        self.compute = compute_status(threads, self.plan)
        if self.config.checkpoint.save_replay_buffer and not is_off_policy(self.plan.algorithm):
            log.warning("checkpoint.saveReplayBuffer ignored: %s has no replay buffer", self.plan.algorithm.__name__)
        self._start_tracking()
        self.storage.check_bucket(self.layout.root.bucket, self.layout.root.key)
        self._stop_if_terminated()
        self.run_log.start()
        try:
            self._provenance = self._own_provenance()
            start = self._find_start()
            self._stop_if_terminated()
            self._model = self._build_model(start, device)
            env = self.model.get_env()
            assert env is not None
            try:
                self._learn()
                if self.termination.requested:
                    self._terminate()
                return self._finish()
            finally:
                self.curves.close()
                self.run_log.close(exit_line(sys.exc_info()[1]))
                self.uploader.close(CLOSE_UPLOAD_SECONDS)
                env.close()
        finally:
            self._close_tracking(sys.exc_info()[1])
            if self._eval_env is not None:
                self._eval_env.close()

    def _start_tracking(self) -> None:
        """Start logging to MLflow in the background, if the run asks for it."""
        if self.config.mlflow is None:
            return
        params = run_params(
            algorithm=self.plan.algorithm.__name__,
            env_id=self.plan.env.env_id,
            seed=self.config.seed,
            total_timesteps=self.plan.total_timesteps,
            n_envs=self.plan.env.n_envs,
            hyperparameters={
                "policy": getattr(self.plan.policy, "__name__", self.plan.policy),
                **self.plan.hyperparameters,
            },
        )
        self.tracker = Tracker.for_config(self.config.mlflow, params)
        self.tracker.start()
        log.info(
            "logging to MLflow at %s, experiment %r",
            self.config.mlflow.tracking_uri,
            self.config.mlflow.experiment_name,
        )

    def _close_tracking(self, error: BaseException | None) -> None:
        """An attempt that did not finish: a terminated one leaves its MLflow run RUNNING (the next
        attempt continues it), a failed one marks it FAILED (a retry sets it RUNNING again)."""
        tracker = self.tracker
        if tracker is None or error is None:
            return
        status = None if isinstance(error, TerminatedError) else "FAILED"
        tracker.finish(status, timeout=TRACKING_CLOSE_SECONDS)

    def _own_provenance(self) -> Provenance:
        """This run as its manifests record it: uid, algorithm, env and the spaces its model has,
        read off the evaluation env (built now: it is the training env's wrappers on one copy)."""
        observation_space, action_space = model_spaces(self._evaluation_env())
        return Provenance(
            run_uid=self.config.run_uid,
            algorithm=self.plan.algorithm.__name__,
            env_id=self.plan.env.env_id,
            observation_space=observation_space,
            action_space=action_space,
        )

    def _evaluation_env(self) -> VecEnv:
        if self._eval_env is None:
            self._eval_env = build_vec_env(self.plan.env, seed=self.config.seed + EVAL_SEED_OFFSET, evaluation=True)
        return self._eval_env

    def is_own(self, manifest: Manifest) -> bool:
        """Whether a checkpoint of this run's folder is this run's (another run's is never pruned)."""
        return foreign_reason(Provenance.of(manifest), self.provenance) is None

    def _learn(self) -> None:
        remaining = self.plan.total_timesteps - self.model.num_timesteps
        if remaining <= 0:
            log.info(
                "checkpoint is at %d of %d timesteps: nothing to train",
                self.model.num_timesteps,
                self.plan.total_timesteps,
            )
            return
        self._stop_callback = StopOnTermination(self.termination)
        callbacks = [
            self._stop_callback,
            self.progress_callback,
            PeriodicCallback(self.config.checkpoint.every_steps, self.save_checkpoint),
        ]
        if self.config.evaluation is not None:
            callbacks.append(PeriodicCallback(self.config.evaluation.every_steps, self.evaluate))
        callbacks.extend(self.plan.extra_callbacks)
        log.info(
            "training %d timesteps (from %d to %d)", remaining, self.model.num_timesteps, self.plan.total_timesteps
        )
        self.started = time.monotonic()
        self.throughput.start(self.model.num_timesteps)
        logger = self.curves.logger()
        if self.tracker is not None:
            logger.output_formats.append(self.tracker.output())
        self.model.set_logger(logger)
        self.model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=False)

    def _stop_if_terminated(self) -> None:
        if self.termination.requested:
            raise TerminatedError("terminated before training started", self.termination.exit_code)

    def _terminate(self) -> None:
        """SIGTERM: checkpoint what was learnt since the last checkpoint, then exit."""
        stop = self._stop_callback
        if stop is not None and stop.stopped and is_off_policy(self.plan.algorithm):
            # learn() stopped on a step whose transition it never stored: uncount that step, so
            # the checkpoint's step and its replay buffer agree (one transition per step).
            self.model.num_timesteps -= self.model.n_envs
        step = self.model.num_timesteps
        storage = self.uploader.blocking(TERMINATION_UPLOAD_SECONDS, supersede=[CHECKPOINT_UPLOADS])
        if self.last_checkpoint_step is None or step > self.last_checkpoint_step:
            with tempfile.TemporaryDirectory(dir=self.workdir, ignore_cleanup_errors=True) as tmp:
                self._write_checkpoint(self._dump(Path(tmp)), self._manifest_fields(), storage)
        self.reporter.finish(self.progress(), should_stop=lambda: True)  # one try: the grace period is short
        raise TerminatedError(
            f"terminated at timestep {step}; resumes from {self.layout.checkpoint(step)}",
            self.termination.exit_code,
        )

    def _finish(self) -> TrainingResult:
        step = self.model.num_timesteps
        storage = self.uploader.blocking(FINAL_UPLOAD_SECONDS, supersede=[CHECKPOINT_UPLOADS])
        # Kept until the runner's workdir goes: the MLflow run gets the same files at the end.
        files = self._dump(Path(tempfile.mkdtemp(prefix="final-", dir=self.workdir)))
        if self.last_checkpoint_step != step:
            self._write_checkpoint(files, self._manifest_fields(), storage)
        final = write_folder(storage, self.layout.final, files, **self._manifest_fields())
        log.info("final model: %s", self.layout.final)
        evaluation = self.config.evaluation or EvaluationConfig()
        try:
            stats = self._run_evaluation(evaluation)
        except EvaluationInterruptedError:
            raise TerminatedError(
                f"terminated during the final evaluation at timestep {step}; the model is in {self.layout.final}",
                self.termination.exit_code,
            ) from None
        self.uploader.blocking(FINAL_UPLOAD_SECONDS).put_bytes(
            self.layout.eval.join(FINAL_EVALUATION_NAME), json.dumps(stats.to_json()).encode()
        )
        summary = stats.summary()
        self.last_evaluation = summary
        result = TrainingResult(
            timesteps=step,
            mean_reward=summary.mean_reward,
            std_reward=summary.std_reward,
            episodes=summary.episodes,
            model_uri=str(self.layout.final),
        )
        log.info(
            "final evaluation: %.3f +/- %.3f over %d episodes",
            summary.mean_reward,
            summary.std_reward,
            summary.episodes,
        )
        self._wait_for_best()
        # The durable record of status.result, written before the status patch that may not get through.
        write_manifest(
            self.uploader.blocking(FINAL_UPLOAD_SECONDS), self.layout.final, final.model_copy(update={"result": result})
        )
        if self.tracker is not None:
            self.tracker.finish(
                "FINISHED",
                metrics={"eval/mean_reward": summary.mean_reward, "eval/std_reward": summary.std_reward},
                step=step,
                artifacts={name: path for name, path in files.items() if name != REPLAY_BUFFER_NAME},
                timeout=TRACKING_FINISH_SECONDS,
                should_stop=lambda: self.termination.requested,  # the status report below comes first
            )
        self.reporter.finish(self.progress(), result, should_stop=lambda: self.termination.requested)
        return result

    # --- start point and model ------------------------------------------------------------

    def _find_start(self) -> StartPoint | None:
        """This run's newest intact checkpoint, else ``resumeFrom``, else ``None``.

        A checkpoint of the run's folder that another run wrote is skipped with a warning, never
        loaded; a ``resumeFrom`` of another algorithm or other spaces is a UserError.
        """
        for checkpoint in scan(self.storage, self.layout.checkpoints).complete:
            why = foreign_reason(Provenance.of(checkpoint.manifest), self.provenance)
            if why is None:
                try:
                    start = self._download(checkpoint.folder, own=True)
                except IncompleteCheckpointError as e:
                    log.warning("skipping checkpoint %s: %s", checkpoint.folder, e)
                    continue
                why = foreign_reason(
                    Provenance.of(start.checkpoint.manifest).with_archive(start.file(MODEL_NAME)), self.provenance
                )
                if why is None:
                    log.info("resuming from %s (timestep %d)", checkpoint.folder, start.checkpoint.step)
                    return start
                shutil.rmtree(start.directory, ignore_errors=True)
            log.warning("skipping checkpoint %s: not this run's (%s)", checkpoint.folder, why)
            self.foreign_steps.add(checkpoint.step)
        if self.config.resume_from:
            folder = resolve_resume_folder(self.storage, S3Uri.parse(self.config.resume_from))
            try:
                start = self._download(folder, own=False)
            except IncompleteCheckpointError as e:
                raise UserError(f"resumeFrom {folder}: {e}") from e
            theirs = Provenance.of(start.checkpoint.manifest).with_archive(start.file(MODEL_NAME))
            problems = resume_mismatch(theirs, self.provenance)
            if problems:
                shutil.rmtree(start.directory, ignore_errors=True)
                raise UserError(
                    f"resumeFrom {folder} does not fit this run: {'; '.join(problems)}. resumeFrom must name a "
                    f"checkpoint of the same algorithm and spaces; train {self.provenance.algorithm} from scratch "
                    "(remove resumeFrom) or resume a run of the checkpoint's algorithm"
                )
            log.info("resuming from %s (timestep %d)", folder, start.checkpoint.step)
            return start
        return None

    def _download(self, folder: S3Uri, own: bool) -> StartPoint:
        directory = Path(tempfile.mkdtemp(prefix="start-", dir=self.workdir))
        try:
            manifest = download_folder(self.storage, folder, directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return StartPoint(Checkpoint(folder, manifest), directory, own)

    def _build_model(self, start: StartPoint | None, device: str) -> BaseAlgorithm:
        plan, seed = self.plan, self.config.seed
        step = start.checkpoint.step if start else 0
        env = build_vec_env(
            plan.env,
            seed=seed + step,
            vecnormalize=start.file(VECNORMALIZE_NAME) if start else None,
        )
        if start is None:
            kwargs = {"verbose": 0, **plan.hyperparameters}
            try:
                return plan.algorithm(plan.policy, env, seed=seed, device=device, **kwargs)
            except (TypeError, ValueError, AssertionError, KeyError) as e:
                env.close()
                raise UserError(f"{plan.algorithm.__name__} rejected the configuration: {e}") from e

        model_path = start.file(MODEL_NAME)
        if model_path is None:
            env.close()
            raise UserError(f"{start.checkpoint.folder} has no {MODEL_NAME}")
        # From another run's model (resumeFrom: fine-tuning, a PBT member copying another), this
        # run's hyperparameters apply to it: SB3 sets them before it builds the model's schedules
        # and buffers again. Its own checkpoint was saved with them already.
        overrides = {} if start.own else dict(plan.hyperparameters)
        try:
            model = load_algorithm(
                plan.algorithm, model_path, env=env, device=device, print_system_info=False, **overrides
            )
        except (*_LOAD_ERRORS, AssertionError, RuntimeError) as e:
            env.close()
            raise UserError(
                f"checkpoint {start.checkpoint.folder} does not fit {plan.algorithm.__name__} on {plan.env.env_id}: {e}"
            ) from e
        model.set_random_seed(seed + step)
        buffer = start.file(REPLAY_BUFFER_NAME)
        if buffer is not None and is_off_policy(plan.algorithm):
            try:
                load_replay_buffer(model, buffer)
            except _LOAD_ERRORS as e:
                env.close()
                raise UserError(f"checkpoint {start.checkpoint.folder}: cannot restore its replay buffer: {e}") from e
            log.info("replay buffer restored: %d transitions", model.replay_buffer.size())  # type: ignore[attr-defined]
        self.resumed_from_step = model.num_timesteps
        if start.own:
            self.last_checkpoint_step = start.checkpoint.step
            self.wall_time_base = start.checkpoint.manifest.wall_time_seconds
            self.progress_callback.episodes = start.checkpoint.manifest.episodes
            self._load_evaluations(model.num_timesteps)
            self._load_best(model.num_timesteps)
        shutil.rmtree(start.directory, ignore_errors=True)
        return model

    # --- checkpoints and evaluation ------------------------------------------------------

    def _manifest_fields(self) -> dict[str, Any]:
        return {
            "step": self.model.num_timesteps,
            "wall_time_seconds": round(self.wall_time_base + time.monotonic() - self.started, 3),
            "algorithm": self.plan.algorithm.__name__,
            "env_id": self.plan.env.env_id,
            "episodes": self.progress_callback.episodes,
            "run_uid": self.config.run_uid,
            "observation_space": describe_space(self.model.observation_space),
            "action_space": describe_space(self.model.action_space),
        }

    def _dump(self, directory: Path, *, replay_buffer: bool = True) -> dict[str, Path]:
        """Write the model (and normalisation stats, replay buffer unless told not to) to local files."""
        files = {MODEL_NAME: directory / MODEL_NAME}
        self.model.save(files[MODEL_NAME])
        vec_normalize = self.model.get_vec_normalize_env()
        if vec_normalize is not None:
            files[VECNORMALIZE_NAME] = directory / VECNORMALIZE_NAME
            vec_normalize.save(str(files[VECNORMALIZE_NAME]))
        if replay_buffer and self.config.checkpoint.save_replay_buffer and is_off_policy(self.plan.algorithm):
            files[REPLAY_BUFFER_NAME] = directory / REPLAY_BUFFER_NAME
            self.model.save_replay_buffer(files[REPLAY_BUFFER_NAME])  # type: ignore[attr-defined]
        return files

    def save_checkpoint(self) -> None:
        """Checkpoint the current state: serialise it to local disk and hand it to the uploader.

        Returns without waiting for S3; the upload writes ``checkpoints/<step>/`` (manifest
        last) and then prunes old checkpoints. A queued, older checkpoint is dropped first
        (it would be replaced anyway), so at most two are on local disk at a time.
        """
        self.uploader.discard(CHECKPOINT_UPLOADS, by=f"checkpoint {self.model.num_timesteps}")
        directory = Path(tempfile.mkdtemp(prefix="checkpoint-", dir=self.workdir))
        try:
            files = self._dump(directory)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        fields = self._manifest_fields()
        self.uploader.submit(
            CHECKPOINT_UPLOADS,
            f"checkpoint {fields['step']}",
            lambda storage: self._write_checkpoint(files, fields, storage),
            cleanup=directory,
        )

    def _write_checkpoint(self, files: dict[str, Path], fields: dict[str, Any], storage: Storage) -> None:
        """Upload ``files`` as ``checkpoints/<step>/`` and prune (on the uploader's worker)."""
        step = int(fields["step"])
        folder = self.layout.checkpoint(step)
        if step in self.foreign_steps:
            log.warning(
                "checkpoint %d not saved: %s holds another run's checkpoint, which stays as it is", step, folder
            )
            return
        write_folder(storage, folder, files, **fields)
        self.last_checkpoint_step = max(step, self.last_checkpoint_step or 0)
        deleted, kept = prune(storage, self.layout.checkpoints, self.config.checkpoint.keep_last, self.is_own)
        log.info("checkpoint %s (%d kept, %d pruned)", folder, len(kept), len(deleted))
        self.reporter.set_checkpoints(CheckpointStatus(latest_uri=str(folder), latest_step=step, count=len(kept)))

    def save_best(self, evaluation: EvaluationResult) -> None:
        """Keep the current model as the best: serialised now (it is this evaluation's model), uploaded
        to ``best/`` beside training (manifest last, with the evaluation). A queued older best is
        replaced; no replay buffer (a best model is for evaluating and resuming a policy, not its
        buffer's exact state)."""
        self.uploader.discard(BEST_UPLOADS, by=f"best model {evaluation.timesteps}")
        directory = Path(tempfile.mkdtemp(prefix="best-", dir=self.workdir))
        try:
            files = self._dump(directory, replay_buffer=False)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        fields = self._manifest_fields()
        self.uploader.submit(
            BEST_UPLOADS,
            f"best model {evaluation.timesteps}",
            lambda storage: self._write_best(files, fields, evaluation, storage),
            cleanup=directory,
        )

    def _write_best(
        self, files: dict[str, Path], fields: dict[str, Any], evaluation: EvaluationResult, storage: Storage
    ) -> None:
        """Upload ``files`` as ``best/`` and report it (on the uploader's worker)."""
        write_folder(storage, self.layout.best, files, evaluation=evaluation, **fields)
        log.info("best model %s: %.3f at timestep %d", self.layout.best, evaluation.mean_reward, evaluation.timesteps)
        self.reporter.set_best(best_status(evaluation, str(self.layout.best)))

    def _wait_for_best(self) -> None:
        """Let a best model still uploading finish, so the final report has it (bounded, and not
        past a SIGTERM: the grace period is short and the upload goes on at close)."""
        deadline = time.monotonic() + FINAL_UPLOAD_SECONDS
        while not self.uploader.wait(BEST_UPLOADS, 1.0):
            if self.termination.requested or time.monotonic() >= deadline:
                log.warning("the best model's upload has not finished; status.best may name an older one")
                return

    def _load_best(self, step: int) -> None:
        """Continue from the best a restarted run had kept, if its evaluation is at most ``step``
        (else it was of a timeline lost with the pod: its manifest goes, so no reader takes it, and
        ``status.best`` with it, until an evaluation of this timeline replaces it)."""
        manifest = read_manifest(self.storage, self.layout.best)
        if manifest is None or not self.is_own(manifest):
            return
        kept = kept_on_resume(manifest.evaluation, step)
        if kept is not None:
            self.best.best = kept
            self.reporter.set_best(best_status(kept, str(self.layout.best)))
            log.info("best model so far: %.3f at timestep %d", kept.mean_reward, kept.timesteps)
            return
        log.info("dropping the best model at timestep %d: past the checkpoint resumed from (%d)", manifest.step, step)
        self.storage.delete([self.layout.best.join(MANIFEST_NAME)])
        self.reporter.set_best(None)

    def _run_evaluation(self, evaluation: EvaluationConfig) -> EpisodeStats:
        eval_env = self._evaluation_env()
        train_env = self.model.get_env()
        if train_env is not None and self.model.get_vec_normalize_env() is not None:
            sync_envs_normalization(train_env, eval_env)
        return run_episodes(
            self.model,
            eval_env,
            evaluation.episodes,
            evaluation.deterministic,
            should_stop=lambda: self.termination.requested,
        )

    def evaluate(self) -> None:
        """Periodic evaluation: record it in ``eval/evaluations.json`` and the progress."""
        assert self.config.evaluation is not None
        try:
            stats = self._run_evaluation(self.config.evaluation)
        except EvaluationInterruptedError:
            log.info("evaluation interrupted by termination")
            return
        self.last_evaluation = stats.summary()
        self.evaluations.append(stats.to_json())
        if self._model is not None:  # written with SB3's next dump, at this step
            self.model.logger.record("eval/mean_reward", self.last_evaluation.mean_reward)
            self.model.logger.record("eval/std_reward", self.last_evaluation.std_reward)
        history, data = self.layout.eval.join(EVALUATIONS_NAME), json.dumps(self.evaluations).encode()
        self.uploader.submit(EVALUATION_UPLOADS, str(history), lambda storage: storage.put_bytes(history, data))
        if self._model is not None and self.best.offer(self.last_evaluation):
            self.save_best(self.last_evaluation)
        log.info(
            "evaluation at %d: %.3f +/- %.3f",
            stats.timesteps,
            self.last_evaluation.mean_reward,
            self.last_evaluation.std_reward,
        )

    def _load_evaluations(self, step: int) -> None:
        """Continue the evaluation history of a restarted run (dropping entries past ``step``)."""
        data = self.storage.get_bytes(self.layout.eval.join(EVALUATIONS_NAME))
        if data is None:
            return
        try:
            history = json.loads(data)
        except json.JSONDecodeError:
            log.warning("ignoring unreadable %s", self.layout.eval.join(EVALUATIONS_NAME))
            return
        self.evaluations = [e for e in history if int(e.get("timesteps", 0)) <= step]
        if self.evaluations:
            last = self.evaluations[-1]
            fields = ("timesteps", "meanReward", "stdReward", "episodes")
            self.last_evaluation = EvaluationResult.model_validate({key: last[key] for key in fields if key in last})

    # --- progress ----------------------------------------------------------------------

    def progress(self) -> TrainingProgress:
        """A ``status.progress`` snapshot of the model as it is now."""
        model = self.model
        buffer = list(model.ep_info_buffer or [])
        return make_progress(
            timesteps=model.num_timesteps,
            total_timesteps=self.plan.total_timesteps,
            steps_per_second=self.throughput.sample(model.num_timesteps),
            episode_rewards=[float(e["r"]) for e in buffer],
            episode_lengths=[float(e["l"]) for e in buffer],
            episodes=self.progress_callback.episodes,
            last_evaluation=self.last_evaluation,
            evaluations=[
                EvaluationPoint(timesteps=int(e["timesteps"]), mean_reward=float(e["meanReward"]))
                for e in self.evaluations
            ],
            resumed_from_step=self.resumed_from_step,
            compute=self.compute,
            storage=self.storage_report.status(self.uploader.health()),
            usage=self.usage.measure(),
            tracking=self.tracker.status() if self.tracker is not None else None,
        )


def model_spaces(env: VecEnv) -> tuple[str, str]:
    """The spaces a model built on ``env`` has, described (:func:`~kubegym_runner.provenance.describe_space`):
    stable-baselines3 puts a channel-last image env behind ``VecTransposeImage`` first, so those are
    the wrapped env's (the wrapper made here is only looked at)."""
    wrapped = BaseAlgorithm._wrap_env(env, verbose=0)
    return describe_space(wrapped.observation_space), describe_space(wrapped.action_space)


def compute_status(threads: ThreadSettings, plan: TrainingPlan) -> ComputeStatus:
    """``status.progress.compute``: the threads and the vectorization this attempt chose."""
    return ComputeStatus(
        threads=threads.threads,
        interop_threads=threads.interop_threads,
        threads_from=threads.source,
        cpu_request_millicores=threads.share.request_millicores,
        cpu_limit_millicores=threads.share.limit_millicores,
        n_envs=plan.env.n_envs,
        vectorization=plan.vectorization.mode.value,  # type: ignore[arg-type]
        env_workers=plan.vectorization.workers,
        vectorization_reason=plan.vectorization.reason[:512],
    )


def train(config: TrainConfig, storage: Storage, reporter: ProgressReporter) -> TrainingResult:
    """Run one training attempt; SIGTERM/SIGINT end it with :class:`TerminatedError`."""
    termination = TerminationRequest()
    termination.install()
    workdir = Path(tempfile.mkdtemp(prefix="kubegym-"))
    try:
        return Trainer(config, storage, reporter, termination, workdir).run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
