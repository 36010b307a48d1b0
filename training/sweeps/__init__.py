"""Studies: many ordinary training runs of one experiment, compared in one report.

A study file (`training/studies/<study>.yaml`) names a base experiment config and either a
search space (random or Sobol sampling) or a list of ablations (augmentation, resolution,
class imbalance, explicit variants), optionally repeated over seeds. The pieces, in the order
a study uses them:

    config.py     load_study(): the study YAML -> typed, validated `Study`
    space.py      sample_params(): search-space points (random / Sobol, log-uniform, choices)
    ablations.py  expand_ablation(): named variants with their config overrides
    plan.py       plan_trials(): the study's trials, each a list of `key=value` overrides
    runner.py     run_trial(): one trial = `python -m training.train` in a subprocess with a
                  timeout, its own checkpoint folder, skipped on resume once finished
    results.py    collect(): what each trial's report.json says, as flat rows
    report.py     write_report(): summary.csv, summary.md and the plots

`python -m training.sweep <study.yaml>` (training/sweep.py) strings them together.
"""

from .config import Study, load_study
from .plan import Trial, plan_trials
from .report import write_report
from .results import TrialResult, collect
from .runner import StudyRunner, run_command

__all__ = [
    "Study",
    "StudyRunner",
    "Trial",
    "TrialResult",
    "collect",
    "load_study",
    "plan_trials",
    "run_command",
    "write_report",
]
