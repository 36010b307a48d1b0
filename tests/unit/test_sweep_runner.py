"""The trial runner: timeouts kill the whole trial, finished trials are skipped on resume,
and results are never silently mixed or overwritten."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from training.sweeps.config import Study, study_from_dict
from training.sweeps.plan import Trial, plan_trials
from training.sweeps.runner import DONE, FAILED, TIMEOUT, StudyRunner, run_command

REPO = Path(__file__).resolve().parents[2]
BASE = str(REPO / "training" / "configs" / "digits_tinyvgg.yaml")
STUDY = {
    "base": BASE,
    "budget": 2,
    "overrides": {"epochs": 1},
    "search": {"sampler": "random", "params": {"data.batch_size": {"choice": [8, 16]}}},
}


@pytest.fixture
def study() -> Study:
    return study_from_dict(STUDY, default_name="tiny")


def stub_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for `python`: the runner calls `<python> -m training.train`."""
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\nimport sys, pathlib, json, time\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_timeout_kills_the_trial_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time, pathlib; "
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"pathlib.Path({str(pid_file)!r}).write_text(str(c.pid)); time.sleep(60)"
    )
    started = time.perf_counter()
    result = run_command([sys.executable, "-c", code], tmp_path / "log.txt", timeout=1.5)
    assert result.timed_out and result.returncode is None
    assert time.perf_counter() - started < 15
    assert "trial timeout" in (tmp_path / "log.txt").read_text()
    child = int(pid_file.read_text())
    for _ in range(50):  # the grandchild was killed with its group (allow for reaping)
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)


def test_a_quick_command_returns_its_code_and_output(tmp_path: Path) -> None:
    result = run_command(
        [sys.executable, "-c", "print('hello'); raise SystemExit(3)"], tmp_path / "log.txt", 30
    )
    assert (result.returncode, result.timed_out) == (3, False)
    assert "hello" in (tmp_path / "log.txt").read_text()


def test_finished_trials_are_skipped_on_resume(tmp_path: Path, study: Study) -> None:
    trials = plan_trials(study)
    # The stub writes a report.json where the trainer would, and counts its calls.
    calls = tmp_path / "calls.txt"
    python = stub_python(
        tmp_path,
        "args = dict(a.split('=', 1) for a in sys.argv[4:] if '=' in a)\n"
        f"open({str(calls)!r}, 'a').write(args['version'] + '\\n')\n"
        "run = pathlib.Path(args['output_dir'], args['name'], args['version'])\n"
        "run.mkdir(parents=True, exist_ok=True)\n"
        "(run / 'report.json').write_text('{}')",
    )
    first = StudyRunner(study, tmp_path / "studies", python=python)
    first.check(trials)
    assert first.run(trials[0]) == DONE  # then the study is interrupted
    assert calls.read_text().splitlines() == ["tiny-t000"]

    again = StudyRunner(study, tmp_path / "studies", python=python)
    with pytest.raises(ValueError, match="--resume"):
        again.check(trials)
    resumed = StudyRunner(study, tmp_path / "studies", python=python, resume=True)
    resumed.check(trials)
    assert [resumed.run(t) for t in trials] == [DONE, DONE]
    assert calls.read_text().splitlines() == ["tiny-t000", "tiny-t001"]  # t000 not rerun
    record = json.loads((resumed.run_dir(trials[1]) / "trial.json").read_text())
    assert record["status"] == DONE and record["overrides"] == ["epochs=1", trials[1].overrides[0]]
    assert record["command"][1:3] == ["-m", "training.train"]


def test_a_changed_study_is_not_resumed_into_old_results(tmp_path: Path, study: Study) -> None:
    trial = plan_trials(study)[0]
    runner = StudyRunner(study, tmp_path, python=stub_python(tmp_path, "pass"))
    runner.run(trial)
    changed = Trial(trial.id, ["data.batch_size=99"])
    with pytest.raises(ValueError, match="the study changed"):
        StudyRunner(study, tmp_path, resume=True).check([changed])


def test_failures_and_timeouts_are_recorded_and_retried(tmp_path: Path, study: Study) -> None:
    trial = plan_trials(study)[0]
    failing = StudyRunner(study, tmp_path, python=stub_python(tmp_path, "sys.exit(1)"))
    assert failing.run(trial) == FAILED
    assert failing.trial_record(trial)["returncode"] == 1
    (failing.run_dir(trial) / "last.pt").write_bytes(b"")  # as a killed trial leaves it
    hanging = StudyRunner(
        study, tmp_path, timeout=1, resume=True, python=stub_python(tmp_path, "time.sleep(60)")
    )
    assert hanging.run(trial) == TIMEOUT
    record = hanging.trial_record(trial)
    assert record["status"] == TIMEOUT and record["continued"] is True
    assert record["command"][-1] == "resume=true"  # an interrupted trial continues its run


def test_trial_folders_use_the_trainers_layout(tmp_path: Path, study: Study) -> None:
    runner = StudyRunner(study, tmp_path / "out")
    trial = plan_trials(study)[1]
    assert runner.run_dir(trial) == tmp_path / "out" / "tiny" / "runs" / "digit_classifier" / (
        "tiny-t001"
    )
    command = runner.command(trial)
    assert command[3] == BASE and command[4] == "epochs=1"
    assert command[-4:] == [
        "name=digit_classifier",
        "version=tiny-t001",
        f"output_dir={(tmp_path / 'out' / 'tiny' / 'runs').resolve()}",
        "tracking.group=tiny",  # a study's trials share a W&B group
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
