"""Optimizers, LR schedules, loop bookkeeping and the progress bar."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from training.config import OptimConfig, ScheduleConfig
from training.engine import epoch_bar
from training.optim import WarmupCosine, build_optimizer, build_schedule, current_lr
from training.state import TrainState, monitor_mode


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


@pytest.mark.parametrize(
    ("name", "cls"),
    [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)],
)
def test_optimizers_by_name_exempt_biases_and_norms_from_decay(name, cls) -> None:
    opt = build_optimizer(model(), OptimConfig(name=name, lr=0.1, weight_decay=0.01))
    assert isinstance(opt, cls)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and len(decay["params"]) == 1  # the Linear weight
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


def test_warmup_cosine_factor() -> None:
    f = WarmupCosine(warmup=3, total=13, floor=0.1)
    assert [f(s) for s in range(3)] == pytest.approx([0.25, 0.5, 0.75])
    assert f(3) == pytest.approx(1.0)
    assert f(8) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
    assert f(13) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)


def lrs_per_epoch(config: ScheduleConfig, metrics: list[float], steps: int = 2) -> list[float]:
    opt = build_optimizer(model(), OptimConfig(lr=1.0))
    schedule = build_schedule(
        opt, config, epochs=len(metrics), steps_per_epoch=steps, monitor_mode="max"
    )
    seen = []
    for metric in metrics:
        for _ in range(steps):
            opt.step()
            schedule.after_batch()
        schedule.after_epoch(metric)
        seen.append(current_lr(opt))
    return seen


def test_step_schedule_decays_every_step_size_epochs() -> None:
    lrs = lrs_per_epoch(ScheduleConfig(name="step", step_size=2, gamma=0.5), [0.0] * 5)
    assert lrs == pytest.approx([1.0, 0.5, 0.5, 0.25, 0.25])


def test_plateau_schedule_watches_the_metric() -> None:
    config = ScheduleConfig(name="plateau", factor=0.1, patience=1)
    lrs = lrs_per_epoch(config, [0.5, 0.6, 0.6, 0.6, 0.7])
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1])


def test_onecycle_and_cosine_step_per_batch_and_end_low() -> None:
    for config in (ScheduleConfig(name="onecycle"), ScheduleConfig(name="cosine", warmup_epochs=1)):
        lrs = lrs_per_epoch(config, [0.0] * 4, steps=5)
        assert lrs[-1] < 0.05 and max(lrs) <= 1.0
    assert lrs_per_epoch(ScheduleConfig(name="none"), [0.0] * 3) == [1.0, 1.0, 1.0]


def test_train_state_tracks_best_and_patience() -> None:
    state = TrainState(monitor="accuracy", mode=monitor_mode("accuracy"))
    for value in (0.5, 0.7, 0.7, 0.6):
        state.end_epoch({"epoch": state.epoch}, value)
    assert (state.best, state.best_epoch, state.bad_epochs, state.epoch) == (0.7, 2, 2, 4)
    assert state.should_stop(2) and not state.should_stop(3) and not state.should_stop(None)
    assert TrainState.from_dict(state.to_dict()) == state
    loss_state = TrainState(monitor="loss", mode=monitor_mode("loss"))
    assert loss_state.mode == "min" and loss_state.improved(1.0)
    loss_state.end_epoch({}, 1.0)
    assert loss_state.improved(0.5) and not loss_state.improved(float("nan"))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_is_quiet_off_a_terminal_in_ci_and_off_the_main_process(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    stream = io.StringIO()  # not a TTY
    assert list(epoch_bar(range(3), "epoch 1/1", True, stream)) == [0, 1, 2]
    assert stream.getvalue() == ""
    terminal = Terminal()
    assert list(epoch_bar(range(3), "epoch 1/1", False, terminal)) == [0, 1, 2]
    assert terminal.getvalue() == ""  # DDP ranks other than 0
    monkeypatch.setenv("CI", "true")
    assert epoch_bar(range(3), "epoch 1/1", True, Terminal()).disable


def test_progress_bar_on_a_terminal_shows_count_and_postfix(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    terminal = Terminal()
    bar = epoch_bar(range(4), "epoch 2/5", True, terminal)
    for _ in bar:
        bar.set_postfix(loss="0.1235", refresh=False)
    bar.close()
    out = terminal.getvalue()
    assert "epoch 2/5" in out and "4/4" in out and "loss=0.1235" in out
