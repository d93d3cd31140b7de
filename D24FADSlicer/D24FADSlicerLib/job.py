"""One scoring run of the engine CLI: command, retries on GPU memory errors, results.

The job is a small state machine driven by :meth:`ScoringJob.poll`, so the GUI can
drive it from a timer and a console caller from a blocking loop (:func:`run_blocking`)
through exactly the same code.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from d24fad.errors import CancelledError, D24FADError, InputError

from .geometry import read_voxel_file
from .runner import BackgroundProcess, engine_environment, engine_python_executable, looks_like_out_of_memory

# Exit statuses of the d24fad CLI (d24fad.cli).
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"

logger = logging.getLogger(__name__)


@dataclass
class ScoringRequest:
    """Everything the CLI needs for one input file; paths are files the job may read."""

    input_path: Path
    input_shape: Optional[tuple[int, int, int]]  # [k, j, i] of the input, checked on the map (None: unchecked)
    support_slices: list[int]                    # slices of the input itself
    other_supports: list[tuple[Path, list[int]]] = field(default_factory=list)
    axis: str = "acquisition"
    checkpoint: Optional[str] = None             # None: the model shipped with the engine
    device: str = "auto"
    batch_size: int = 16
    threshold: Union[str, float] = "auto"
    window: str = "auto"                         # --window: "auto" or WIDTH/LEVEL (see intensity.py)

    def command(self, engine: Sequence[str], output_dir: Path, batch_size: int) -> list[str]:
        """``engine`` runs the d24fad CLI, normally ``[python, "-m", "d24fad"]``."""
        command = [*engine, "score", "--input", str(self.input_path),
                   "--axis", self.axis, "--window", self.window, "--out", str(output_dir), "--map-format", "nrrd",
                   "--threshold", str(self.threshold), "--device", self.device,
                   "--batch-size", str(batch_size), "--progress", "json"]
        command += ["--support-slices", _comma_list(self.support_slices)]
        for path, indices in self.other_supports:  # at most one (support.require_engine_support_layout)
            command += ["--support-input", str(path), "--support-slices-other", _comma_list(indices)]
        if self.checkpoint:
            command += ["--checkpoint", str(self.checkpoint)]
        return command


def _comma_list(indices: Sequence[int]) -> str:
    return ",".join(str(int(i)) for i in indices)


@dataclass
class SliceScore:
    index: int
    position_mm: float
    score: float


@dataclass
class ScoringResult:
    anomaly_map: np.ndarray          # float32, the input's [k, j, i] shape
    slice_scores: list[SliceScore]
    threshold: float
    run_info: dict                   # run.json as written by the CLI
    batch_size: int                  # the batch size that finally ran (after OOM retries)


@dataclass
class JobStatus:
    state: str
    done: int = 0
    total: int = 0
    message: str = ""


class ScoringJob:
    """Run a :class:`ScoringRequest` in the background; halve the batch on GPU OOM."""

    def __init__(self, request: ScoringRequest, work_dir: Path, python: Optional[str] = None,
                 env: Optional[dict] = None, command_prefix: Optional[Sequence[str]] = None):
        self.request = request
        self.work_dir = Path(work_dir)
        self._env = env if env is not None else engine_environment()
        # Tests put a stand-in CLI in command_prefix; in use the real engine runs.
        self._engine = list(command_prefix) if command_prefix else [
            python or engine_python_executable(), "-m", "d24fad"]
        self.batch_size = int(request.batch_size)
        self.attempts = 0
        self.status = JobStatus(RUNNING)
        self.result: Optional[ScoringResult] = None
        self.error: Optional[D24FADError] = None
        self.log: list[str] = []
        self._process: Optional[BackgroundProcess] = None

    @property
    def output_dir(self) -> Path:
        return self.work_dir / f"attempt-{self.attempts}"

    def start(self) -> "ScoringJob":
        self.attempts += 1
        command = self.request.command(self._engine, self.output_dir, self.batch_size)
        self.log.append("$ " + " ".join(command))
        self._process = BackgroundProcess(command, env=self._env, cwd=str(self.work_dir)).start()
        return self

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process else None

    def poll(self) -> JobStatus:
        """Consume progress lines; on exit, read results or decide on a retry."""
        if self.status.state != RUNNING or self._process is None:
            return self.status
        for event in self._process.poll():
            if event.get("event") == "progress":
                self.status.done = int(event.get("done", 0))
                self.status.total = int(event.get("total", 0))
                self.status.message = str(event.get("stage", ""))
        returncode = self._process.returncode
        if returncode is None:
            return self.status
        messages = self._process.messages
        self.log.extend(messages)
        if returncode == 0:
            self._finish_successfully()
        elif returncode != EXIT_BAD_INPUT and looks_like_out_of_memory(messages) and self.batch_size > 1:
            self.batch_size = max(1, self.batch_size // 2)
            self.log.append(f"GPU out of memory: retrying with batch size {self.batch_size}")
            self.status = JobStatus(RUNNING, message=f"out of memory, retrying with batch size {self.batch_size}")
            self.start()
        else:
            self._fail(returncode, messages)
        return self.status

    def _finish_successfully(self) -> None:
        try:
            self.result = read_scoring_outputs(self.output_dir, self.request.input_shape, self.batch_size)
        except D24FADError as exc:
            self.error = exc
            self.status = JobStatus(FAILED, message=str(exc))
            return
        self.status = JobStatus(SUCCEEDED, self.status.total, self.status.total, "done")

    def _fail(self, returncode: int, messages: list[str]) -> None:
        details = _error_summary(messages) or f"the scoring process exited with status {returncode}"
        if returncode == EXIT_CANCELLED:
            self.error = CancelledError(details)
            self.status = JobStatus(CANCELLED, message=details)
            return
        error_class = InputError if returncode == EXIT_BAD_INPUT else D24FADError
        self.error = error_class(f"scoring failed (exit status {returncode}): {details}")
        self.status = JobStatus(FAILED, message=str(self.error))

    def cancel(self) -> None:
        """Stop the run now; the job ends CANCELLED and produces no result."""
        if self._process is not None and self.status.state == RUNNING:
            self._process.cancel()
            self.error = CancelledError("scoring cancelled by the user")
            self.status = JobStatus(CANCELLED, message="cancelled")

    def cleanup(self) -> None:
        """Delete the temporary input copies and outputs of this job."""
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _error_summary(messages: list[str]) -> str:
    """The CLI's own error line if there is one, else the end of the output (a traceback)."""
    for line in reversed(messages):
        if line.startswith("d24fad: "):
            return line[len("d24fad: "):]
    return "\n".join(messages[-15:])


def run_blocking(job: ScoringJob, progress: Optional[Callable[[int, int], None]] = None,
                 should_cancel: Optional[Callable[[], bool]] = None, poll_seconds: float = 0.1) -> ScoringResult:
    """Start ``job`` if needed and wait for it; raise its error, or CancelledError."""
    if job.attempts == 0:
        job.start()
    last_reported = None
    while True:
        status = job.poll()
        if progress is not None and status.total and (status.done, status.total) != last_reported:
            last_reported = (status.done, status.total)
            progress(status.done, status.total)
        if status.state != RUNNING:
            break
        if should_cancel is not None and should_cancel():
            job.cancel()
            break
        time.sleep(poll_seconds)
    if job.status.state == FAILED:
        # The exception carries the summary; the full engine output goes to the log.
        logger.error("scoring failed: %s\nengine output:\n%s", job.error, "\n".join(job.log))
    if job.status.state != SUCCEEDED:
        raise job.error
    return job.result


def read_scoring_outputs(output_dir: Path, input_shape, batch_size: int) -> ScoringResult:
    """Read anomaly_map.nrrd, scores.csv and run.json written by ``d24fad score``."""
    anomaly_map = read_voxel_file(output_dir / "anomaly_map.nrrd", input_shape, "anomaly map").astype(np.float32)
    run_info = _read_run_info(output_dir / "run.json")
    threshold = run_info.get("threshold")
    if not isinstance(threshold, (int, float)):
        raise D24FADError(f"{output_dir / 'run.json'} has no numeric 'threshold'")
    return ScoringResult(anomaly_map, _read_slice_scores(output_dir / "scores.csv"), float(threshold),
                         run_info, batch_size)


def _read_run_info(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise D24FADError(f"cannot read the run record {path}: {exc}") from exc


def _read_slice_scores(path: Path) -> list[SliceScore]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return [SliceScore(int(row["index"]), float(row["position_mm"]), float(row["score"]))
                    for row in csv.DictReader(handle)]
    except (OSError, KeyError, ValueError) as exc:
        raise D24FADError(f"cannot read the slice scores {path}: {exc}") from exc
