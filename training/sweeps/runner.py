"""Run trials: each one an ordinary `python -m training.train` in its own process and folder.

Why a subprocess per trial rather than calling `fit()` in a loop: a trial that hangs (a dead
DataLoader worker, a pathological config) can then be killed at its timeout without taking the
study down, memory is returned to the system between trials, and each trial is exactly the
command a user would type (it is written into the trial's `trial.json` and `train.log`).

Layout under `<out>/<study>/runs/`: the trainer's own `<name>/<version>/` with the base
config's name and the version `<study>-<trial id>`, so a trial's `model.pt` archives as
`<name>-<study>-<trial id>.mar` next to the default model. A trial is finished when its
`report.json` exists (the trainer writes it last); on resume finished trials are skipped, and
an interrupted one continues from its `last.pt`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Study, check_base
from .plan import Trial

log = logging.getLogger(__name__)

#: How long a timed-out trial gets to exit after SIGTERM before it is SIGKILLed.
KILL_GRACE_S = 5.0

DONE, FAILED, TIMEOUT = "done", "failed", "timeout"


@dataclass
class CommandResult:
    """How a trial's process ended."""

    returncode: int | None  # None: killed at the timeout
    seconds: float
    timed_out: bool


def run_command(
    command: Sequence[str],
    log_path: Path,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> CommandResult:
    """Run `command` with stdout and stderr into `log_path`; kill it after `timeout` s.

    The process starts in a new session (its own process group), so a timeout or Ctrl-C
    kills the whole group: DataLoader workers and anything else the trial started, not only
    the Python process at its top.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out.write(f"\n[sweep] killed after the {timeout:g} s trial timeout\n".encode())
            return CommandResult(None, time.perf_counter() - started, timed_out=True)
        except BaseException:  # Ctrl-C or any error here: never leave a trial running
            _kill_group(proc)
            raise
    return CommandResult(returncode, time.perf_counter() - started, timed_out=False)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the trial's process group, SIGKILL it when it does not exit in time."""
    _signal_group(proc, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE_S)
    # Children that outlived the main process would keep holding cores: SIGKILL them too
    # (while any member lives, the group id cannot be reused by an unrelated process).
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(proc.pid, sig)  # the group id is the leader's pid (start_new_session)


class StudyRunner:
    """Runs a study's trials one after another into `<out>/<study>/`.

    Args:
        study: the loaded study.
        out: the folder holding studies (`studies/` by default).
        timeout: seconds per trial (None: the study's `trial_timeout`, else no limit).
        resume: skip finished trials and continue interrupted ones; without it, a study
            folder that already holds trials is an error (results are never overwritten).
        python: the interpreter that runs `training.train`.
    """

    def __init__(
        self,
        study: Study,
        out: Path | str = "studies",
        timeout: float | None = None,
        resume: bool = False,
        python: str = sys.executable,
    ) -> None:
        self.study = study
        self.study_dir = Path(out) / study.name
        self.runs_dir = self.study_dir / "runs"
        self.timeout = timeout if timeout is not None else study.trial_timeout
        self.resume = resume
        self.python = python
        self.model_name = check_base(study).name

    def run_dir(self, trial: Trial) -> Path:
        """Where the trainer writes this trial (`<name>/<version>/`, its usual layout)."""
        return self.runs_dir / self.model_name / self.version(trial)

    def version(self, trial: Trial) -> str:
        return f"{self.study.name}-{trial.id}"

    def is_done(self, trial: Trial) -> bool:
        return (self.run_dir(trial) / "report.json").is_file()

    def overrides(self, trial: Trial) -> list[str]:
        """Everything the trial changes in the base config (study-wide, then its own)."""
        return [*self.study.base_overrides(), *trial.overrides]

    def command(self, trial: Trial, continue_run: bool = False) -> list[str]:
        """`python -m training.train <base> <overrides> name=... version=... output_dir=...
        tracking.group=<study>`."""
        identity = [
            f"name={self.model_name}",
            f"version={self.version(trial)}",
            f"output_dir={self.runs_dir.resolve()}",
            f"tracking.group={self.study.name}",  # W&B shows a study's trials together
        ]
        resume = ["resume=true"] if continue_run else []
        return [
            self.python,
            "-m",
            "training.train",
            str(self.study.base),
            *self.overrides(trial),
            *identity,
            *resume,
        ]

    def check(self, trials: Sequence[Trial]) -> None:
        """Refuse to mix results: without `resume`, existing trial folders are an error; with
        it, a trial whose recorded overrides differ from the plan (the study file changed)."""
        existing = [t for t in trials if self.run_dir(t).exists()]
        if existing and not self.resume:
            raise ValueError(
                f"{self.study_dir} already holds {len(existing)} trial(s) of this study; pass "
                "--resume to skip the finished ones and continue, or delete the folder"
            )
        for trial in existing:
            recorded = self._read_trial_file(trial).get("overrides")
            if recorded is not None and recorded != self.overrides(trial):
                raise ValueError(
                    f"trial {trial.id} in {self.run_dir(trial)} ran with {recorded}, but the "
                    f"study now plans {self.overrides(trial)}; the study changed: use another "
                    "--out folder or delete the study folder"
                )

    def run(self, trial: Trial) -> str:
        """Run one trial unless it is finished; returns `done`, `failed` or `timeout`."""
        if self.is_done(trial):
            return DONE
        run_dir = self.run_dir(trial)
        continue_run = self.resume and (run_dir / "last.pt").is_file()
        command = self.command(trial, continue_run)
        record: dict[str, Any] = {
            "id": trial.id,
            "study": self.study.name,
            "overrides": self.overrides(trial),
            "params": trial.params,
            "group": trial.group,
            "variant": trial.variant,
            "seed": trial.seed,
            "command": command,
            "started": _now(),
        }
        self._write_trial_file(trial, record)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        result = run_command(command, run_dir / "train.log", self.timeout, env)
        status = DONE if result.returncode == 0 and self.is_done(trial) else FAILED
        if result.timed_out:
            status = TIMEOUT
        record.update(
            status=status,
            returncode=result.returncode,
            process_s=round(result.seconds, 2),
            finished=_now(),
            continued=continue_run,
        )
        self._write_trial_file(trial, record)
        if status != DONE:
            log.warning("trial %s %s; see %s", trial.id, status, run_dir / "train.log")
        return status

    def trial_record(self, trial: Trial) -> dict[str, Any]:
        """What `trial.json` says about the trial's last run (empty when it never ran)."""
        return self._read_trial_file(trial)

    def _write_trial_file(self, trial: Trial, record: dict[str, Any]) -> None:
        path = self.run_dir(trial) / "trial.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")

    def _read_trial_file(self, trial: Trial) -> dict[str, Any]:
        path = self.run_dir(trial) / "trial.json"
        return json.loads(path.read_text()) if path.is_file() else {}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
