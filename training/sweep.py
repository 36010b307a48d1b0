"""Command line: `python -m training.sweep training/studies/<study>.yaml [options]`.

Runs a study (a search or a set of ablations over one base experiment, see
`training.sweeps`): every trial is an ordinary `python -m training.train` run with its own
checkpoint folder under `<out>/<study>/runs/`, then `summary.csv`, `summary.md` and the plots
are written to `<out>/<study>/`, and the best trial's checkpoint is printed with the command
that archives it.

    python -m training.sweep training/studies/digits_lr_batch.yaml
    python -m training.sweep training/studies/digits_lr_batch.yaml --budget 16 --resume
    python -m training.sweep training/studies/scenes_resolution.yaml --trial-timeout 600
    python -m training.sweep training/studies/digits_augmentation.yaml --dry-run
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from .sweeps import StudyRunner, collect, load_study, plan_trials, write_report
from .sweeps.plan import Trial
from .sweeps.report import display_path
from .sweeps.results import TrialResult, best
from .sweeps.runner import DONE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.sweep",
        description="Run a study of training runs and write one comparison report.",
    )
    parser.add_argument("study", help="study YAML, e.g. training/studies/digits_lr_batch.yaml")
    parser.add_argument("--budget", type=int, help="trials to sample (search) or to run at most")
    parser.add_argument(
        "--resume", action="store_true", help="skip finished trials, continue interrupted ones"
    )
    parser.add_argument(
        "--trial-timeout", type=float, metavar="S", help="kill a trial after S seconds"
    )
    parser.add_argument("--out", default="studies", help="folder of studies (default: studies/)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the planned trials and their overrides"
    )
    parser.add_argument("--quiet", action="store_true", help="warnings and errors only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        study = load_study(args.study)
        trials = plan_trials(study, args.budget)
        runner = StudyRunner(study, args.out, timeout=args.trial_timeout, resume=args.resume)
        if not args.dry_run:
            runner.check(trials)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for trial in trials:
            print(f"{trial.id}: {shlex.join(runner.overrides(trial)) or '(base config)'}")
        return 0
    return run_study(runner, trials, quiet=args.quiet)


def run_study(runner: StudyRunner, trials: list[Trial], quiet: bool = False) -> int:
    """Run the trials in order, rewriting the summary after each; 0 when any finished."""
    study = runner.study
    results: list[TrialResult] = []
    for i, trial in enumerate(trials):
        skipped = runner.is_done(trial)
        status = runner.run(trial)
        result = collect(runner, trial, study.metric, order=i)
        results.append(result)
        if not quiet:
            print(_progress_line(i + 1, len(trials), result, skipped), flush=True)
        write_report(study, results, runner.study_dir, plots=False)
        if status != DONE and not quiet:
            print(f"    see {display_path(runner.run_dir(trial) / 'train.log')}", flush=True)
    paths = write_report(study, results, runner.study_dir)
    top = best(results)
    print(f"wrote {', '.join(display_path(p) for p in paths)}")
    if top is None:
        print("no trial finished", file=sys.stderr)
        return 1
    checkpoint = display_path(top.checkpoint)
    print(f"best trial {top.trial.id}: val {top.metric} {_score(top.val)}, test {_score(top.test)}")
    print(f"best checkpoint: {checkpoint}")
    print(f"archive it: python -m tools.archive {checkpoint}")
    return 0


def _progress_line(index: int, total: int, result: TrialResult, skipped: bool) -> str:
    changed = " ".join(f"{k}={v}" for k, v in result.trial.params.items())
    if result.ok:
        took = "finished earlier" if skipped else f"{result.process_s or 0:.0f} s"
        score = f"val {result.metric} {_score(result.val)} test {_score(result.test)}"
        return f"[{index}/{total}] {result.trial.id} {changed}: {score} ({took})"
    return f"[{index}/{total}] {result.trial.id} {changed}: {result.status.upper()}"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
