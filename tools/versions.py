"""Model versions without downtime: list, promote behind a canary gate, roll back, retire.

TorchServe holds several versions of a model and routes `/predictions/<model>` (no version)
to the default one; `PUT .../set-default` switches that pointer atomically in the frontend,
so requests in flight and new ones are all answered, by the old or the new version. What
TorchServe does not do, this module does:

- **Which version is the default.** `GET /models/<model>/all` has no default flag, but
  `GET /models/<model>` (no version) describes exactly the default version: `versions()`
  marks that one.
- **Is the candidate any good.** `promote()` registers `<model>-<version>.mar` from the
  model store, scores candidate and default on the same validation set through their
  versioned routes (`tools.validation`), and switches only if
  `candidate >= default - tolerance` (`gate()`); a refused candidate is unregistered again.
- **What was the default before.** TorchServe forgets it, so every switch made here is
  recorded in a small JSON file next to the server's `key_file.json`
  (`<server workdir>/.cvserve/versions.json`: a stack of previous defaults per model);
  `rollback()` pops it. Without a record (another tool switched, or the file is gone) it
  falls back to the registry: with exactly two versions registered the other one is the
  previous default; otherwise it names the versions and asks for `set-default`.
- **Retiring the default.** TorchServe refuses (403 "Cannot remove default version") while
  other versions exist; `retire()` says what to do instead.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.client import Client, CvserveError
from tools.validation import ValidationSet, metric_name, score_version

log = logging.getLogger("tools.versions")

HISTORY_FILE = Path(".cvserve") / "versions.json"
DEFAULT_TOLERANCE = 0.01


class VersionError(RuntimeError):
    """A version operation that cannot be done, with what to do instead."""


# ---- reading the registry -----------------------------------------------------------------------


def default_version(client: Client, model: str) -> str | None:
    """The default version: `GET /models/<model>` describes only that one. None if unknown."""
    try:
        (desc,) = client.describe(model)
    except CvserveError as exc:
        if exc.status == 404:
            return None
        raise
    return str(desc["modelVersion"])


def registered_versions(client: Client, model: str) -> list[str]:
    """Every registered version of `model` (empty if the model is not registered)."""
    try:
        return [str(d["modelVersion"]) for d in client.describe(model, "all")]
    except CvserveError as exc:
        if exc.status == 404:
            return []
        raise


def card_of(client: Client, model: str, version: str) -> dict[str, Any]:
    """The version's public model card, answered by its handler (`?customized=true`).

    Asking the running worker (rather than unpacking the .mar) is what works for a remote
    client, and describes what is actually loaded. Empty when the worker cannot answer.
    """
    try:
        (desc,) = client.describe(model, version, customized=True)
    except CvserveError as exc:
        log.warning("no model card for %s %s: %s", model, version, exc)
        return {}
    card = desc.get("customizedMetadata") or {}
    if isinstance(card, str):  # older frontends send the handler's JSON as a string
        try:
            card = json.loads(card)
        except json.JSONDecodeError:
            return {}
    return card if isinstance(card, dict) else {}


def versions(client: Client, model: str) -> list[dict[str, Any]]:
    """One row per version: default flag, archive, workers by status, the card's metrics."""
    default = default_version(client, model)
    if default is None:
        raise VersionError(
            f"model {model!r} is not registered (see `python -m tools.client models`)"
        )
    rows = []
    for desc in client.describe(model, "all"):
        version = str(desc["modelVersion"])
        workers = desc.get("workers", [])
        ready = sum(1 for w in workers if w.get("status") == "READY")
        card = card_of(client, model, version) if ready else {}
        rows.append(
            {
                "version": version,
                "default": version == default,
                "archive": desc.get("modelUrl"),
                "workers": f"{ready}/{len(workers)} READY",
                "task": card.get("task"),
                "created": card.get("created"),
                "metrics": card.get("metrics", {}),
            }
        )
    return rows


def format_versions(model: str, rows: list[dict[str, Any]]) -> str:
    """A small table for the CLI."""
    lines = [f"{model}:", f"  {'':1} {'version':<9} {'workers':<11} {'archive':<28} metrics"]
    for row in rows:
        metrics = ", ".join(f"{k}={v}" for k, v in row["metrics"].items()) or "-"
        mark = "*" if row["default"] else ""
        lines.append(
            f"  {mark:1} {row['version']:<9} {row['workers']:<11} {row['archive'] or '-':<28} "
            f"{metrics}"
        )
    lines.append("  (* = default: answers /predictions/" + model + " without a version)")
    return "\n".join(lines)


# ---- history of defaults ------------------------------------------------------------------------


class History:
    """Previous default versions per model, as a JSON stack next to the server's key file.

    A file (not the client's memory) because promote and rollback are separate commands; next
    to `key_file.json` because that is the server's working directory, so the history is per
    server. Written atomically (temp file + rename): a crash never leaves half a JSON file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_key_file(cls, key_file: str | Path) -> History:
        return cls(Path(key_file).resolve().parent / HISTORY_FILE)

    def _read(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError:
            log.warning("%s is not valid JSON: starting a fresh version history", self.path)
            return {}
        return {k: [str(v) for v in vs] for k, vs in data.get("previous_defaults", {}).items()}

    def _write(self, data: dict[str, list[str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "about": "previous default versions per model, last = most recent (tools/versions.py)",
            "previous_defaults": data,
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".versions-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.path)

    def previous(self, model: str) -> list[str]:
        return self._read().get(model, [])

    def push(self, model: str, version: str) -> None:
        data = self._read()
        data.setdefault(model, []).append(version)
        self._write(data)

    def set(self, model: str, stack: list[str]) -> None:
        data = self._read()
        data[model] = stack
        self._write(data)

    def forget(self, model: str, version: str) -> None:
        """Drop a retired version: rolling back to it would fail."""
        stack = self.previous(model)
        if version in stack:
            self.set(model, [v for v in stack if v != version])


# ---- the gate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateDecision:
    accept: bool
    reason: str


def gate(candidate: float, default: float | None, tolerance: float) -> GateDecision:
    """Accept when `candidate >= default - tolerance` (higher is better for both metrics).

    The tolerance absorbs the noise of a small validation set: 200 samples move accuracy in
    steps of 0.005, so an equally good retrain can score a step lower.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if default is None:
        return GateDecision(True, "no current default to compare with")
    floor = default - tolerance
    if candidate >= floor - 1e-12:  # scores are ratios of counts: allow float round-off
        return GateDecision(
            True, f"candidate {candidate:.4f} >= default {default:.4f} - tolerance {tolerance}"
        )
    return GateDecision(
        False, f"candidate {candidate:.4f} < default {default:.4f} - tolerance {tolerance}"
    )


# ---- promote / rollback / retire ----------------------------------------------------------------


@dataclass
class PromotionReport:
    """Everything `promote` decided and measured; printed and saved as JSON."""

    model: str
    candidate: str
    previous_default: str | None
    decision: str = "pending"  # promoted | forced | rejected | error
    reason: str = ""
    metric: str | None = None
    tolerance: float = DEFAULT_TOLERANCE
    validation: str | None = None
    samples: int = 0
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    default_after: str | None = None
    finished: str = ""

    @property
    def promoted(self) -> bool:
        return self.decision in ("promoted", "forced")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "candidate": self.candidate,
            "previous_default": self.previous_default,
            "decision": self.decision,
            "reason": self.reason,
            "metric": self.metric,
            "tolerance": self.tolerance,
            "validation": self.validation,
            "samples": self.samples,
            "scores": self.scores,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "default_after": self.default_after,
            "finished": self.finished,
        }


class _Stopwatch:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.started = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.started
        self.started = now


def promote(
    client: Client,
    model: str,
    version: str,
    load_validation: Callable[[dict[str, Any], dict[str, Any]], ValidationSet] | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
    history: History | None = None,
    archive: str | None = None,
) -> PromotionReport:
    """Register `<model>-<version>.mar`, canary-validate it against the default, switch or not.

    `load_validation(candidate_card, default_card)` builds the validation set once the cards
    say what the two versions are and what they trained on (not needed with `force`). The
    candidate is registered synchronously with one worker, so it is READY when scoring
    starts; it is unregistered again if the gate refuses it (unless it was registered before
    this call). Never raises for a refusal: the
    report says `rejected`. Raises VersionError/CvserveError when the promotion cannot run.
    """
    started = time.perf_counter()
    previous = default_version(client, model)
    report = PromotionReport(model, version, previous, tolerance=tolerance)
    watch = _Stopwatch(report.timings)
    if previous == version:
        raise VersionError(f"{model} {version} is already the default version")
    already = version in registered_versions(client, model)
    if not already:
        client.register(archive or f"{model}-{version}.mar", initial_workers=1, synchronous=True)
    watch.lap("register")
    try:
        if force or previous is None:
            report.reason = "--force: gate skipped" if force else "no current default"
        else:
            card = card_of(client, model, version)
            if not card.get("task"):
                raise VersionError(f"{model} {version} did not describe its model card")
            default_card = card_of(client, model, previous)
            vset = load_validation(card, default_card)  # type: ignore[misc]
            _check_classes(vset, card)
            watch.lap("load_validation")
            report.metric, report.validation, report.samples = (
                metric_name(vset.task), vset.source, len(vset),
            )  # fmt: skip
            classes = len(card.get("classes", [])) or None
            candidate = score_version(client, model, version, vset, classes)
            watch.lap("score_candidate")
            current = score_version(client, model, previous, vset, classes)
            watch.lap("score_default")
            report.scores = {"candidate": candidate.to_dict(), "default": current.to_dict()}
            decision = gate(candidate.value, current.value, tolerance)
            report.reason = decision.reason
            if not decision.accept:
                report.decision = "rejected"
                _drop_candidate(client, model, version, already, report)
                watch.lap("unregister")
                return _finish(report, client, started)
        client.set_default(model, version)
        watch.lap("switch")
        report.decision = "forced" if force else "promoted"
        if previous is not None and history is not None:
            history.push(model, previous)
    except Exception:
        report.decision = "error"
        if not already and default_version(client, model) != version:
            _drop_candidate(client, model, version, already, report)
        raise
    return _finish(report, client, started)


def _check_classes(vset: ValidationSet, card: dict[str, Any]) -> None:
    """Folder classes must be the model's: a label the model cannot say is a sure miss."""
    model_classes = list(card.get("classes", []))
    if vset.task != card.get("task"):
        raise VersionError(f"a {vset.task} validation set cannot score a {card.get('task')} model")
    unknown = sorted(set(vset.classes) - set(model_classes))
    if vset.task == "classification" and unknown:
        raise VersionError(
            f"validation classes {unknown} are not classes of the model ({model_classes}); "
            "name the class folders like the model's classes"
        )
    if vset.task == "segmentation" and vset.classes and vset.classes != model_classes:
        raise VersionError(
            f"the validation masks index classes {vset.classes}, the model {model_classes}: "
            "mask values would mean different classes"
        )


def _drop_candidate(
    client: Client, model: str, version: str, already: bool, report: PromotionReport
) -> None:
    if already:
        report.reason += f"; {version} kept registered (it was registered before promote)"
        return
    try:
        client.unregister(model, version)
        report.reason += f"; {version} unregistered"
    except CvserveError as exc:  # reported, not raised: the refusal itself stands
        log.warning("could not unregister %s %s: %s", model, version, exc)
        report.reason += f"; unregistering {version} failed: {exc}"


def _finish(report: PromotionReport, client: Client, started: float) -> PromotionReport:
    report.timings["total"] = time.perf_counter() - started
    report.default_after = default_version(client, report.model)
    report.finished = datetime.now(UTC).isoformat(timespec="seconds")
    return report


def rollback(client: Client, model: str, history: History | None = None) -> dict[str, Any]:
    """Make the previous default the default again (see the module doc for how it is found)."""
    current = default_version(client, model)
    if current is None:
        raise VersionError(f"model {model!r} is not registered")
    registered = registered_versions(client, model)
    stack = history.previous(model) if history else []
    target, source = None, "history"
    while stack:
        candidate = stack.pop()
        if candidate != current and candidate in registered:
            target = candidate
            break
    if target is None:
        others = [v for v in registered if v != current]
        if len(others) != 1:
            raise VersionError(
                f"no recorded previous default for {model} (current {current}; registered: "
                f"{', '.join(registered)}): choose one with "
                f"`python -m tools.client set-default {model} <version>`"
            )
        target, source = others[0], "registry (the only other registered version)"
    client.set_default(model, target)
    if history:
        history.set(model, stack)
    return {"model": model, "from": current, "to": target, "previous_found_in": source}


def retire(
    client: Client, model: str, version: str, history: History | None = None
) -> dict[str, Any]:
    """Unregister a non-default version; for the default, explain what to do instead."""
    registered = registered_versions(client, model)
    if version not in registered:
        raise VersionError(
            f"{model} has no version {version} (registered: {', '.join(registered) or 'none'})"
        )
    current = default_version(client, model)
    if version == current:
        others = [v for v in registered if v != version]
        if others:
            hint = history.previous(model)[-1:] if history else []
            back = (
                f"`python -m tools.client rollback {model}` (back to {hint[0]}) or " if hint else ""
            )
            raise VersionError(
                f"{version} is the default version of {model}: it answers every request "
                f"without a version, so TorchServe refuses to remove it while other versions "
                f"({', '.join(others)}) are registered. Make another version the default "
                f"first: {back}`python -m tools.client set-default {model} <version>`, then "
                f"retire {version}."
            )
        raise VersionError(
            f"{version} is the only version of {model}: retiring it would take the model "
            f"offline. If that is what you want: `python -m tools.client unregister {model}`."
        )
    client.unregister(model, version)
    if history:
        history.forget(model, version)
    return {"model": model, "retired": version, "default": current}
