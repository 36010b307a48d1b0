"""tools.versions without a server: the gate, the history file, and promote/rollback/retire
against a fake registry that behaves like TorchServe's (404s, 403 on removing the default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools.client import CvserveError
from tools.validation import Sample, ValidationSet
from tools.versions import History, VersionError, gate, promote, retire, rollback


@pytest.mark.parametrize(
    ("candidate", "default", "tolerance", "accept"),
    [
        (0.95, 0.95, 0.0, True),  # equal is not worse
        (0.945, 0.95, 0.01, True),  # within tolerance
        (0.94, 0.95, 0.01, True),  # exactly at the floor (float round-off allowed)
        (0.939, 0.95, 0.01, False),
        (0.10, 0.97, 0.01, False),
        (0.99, 0.50, 0.0, True),
        (0.20, None, 0.01, True),  # nothing to compare with
    ],
)
def test_gate(candidate: float, default: float | None, tolerance: float, accept: bool) -> None:
    decision = gate(candidate, default, tolerance)
    assert decision.accept is accept
    assert decision.reason


def test_gate_rejects_negative_tolerance() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        gate(0.9, 0.9, -0.1)


def test_history_is_a_stack_per_model(tmp_path: Path) -> None:
    history = History.for_key_file(tmp_path / "key_file.json")
    assert history.path == tmp_path / ".cvserve" / "versions.json"
    assert history.previous("m") == []
    history.push("m", "1.0")
    history.push("m", "2.0")
    history.push("other", "1.0")
    assert History(history.path).previous("m") == ["1.0", "2.0"]  # persisted
    history.forget("m", "1.0")
    assert history.previous("m") == ["2.0"]
    assert history.previous("other") == ["1.0"]


def test_history_survives_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "versions.json"
    path.write_text("{not json")
    history = History(path)
    assert history.previous("m") == []
    history.push("m", "1.0")
    assert history.previous("m") == ["1.0"]


class FakeServer:
    """The management calls tools.versions makes, with TorchServe's answers and errors.

    `accuracy` maps version -> the fraction of samples it labels right.
    """

    def __init__(self, model: str, versions: list[str], accuracy: dict[str, float]) -> None:
        self.model = model
        self.registered = list(versions)
        self.default = versions[0]
        self.accuracy = accuracy
        self.calls: list[tuple[str, ...]] = []

    def _check(self, model: str) -> None:
        if model != self.model or not self.registered:
            raise CvserveError(404, f"Model not found: {model}", "ModelNotFoundException")

    def describe(
        self, model: str, version: str | None = None, customized: bool = False
    ) -> list[dict[str, Any]]:
        self._check(model)
        chosen = self.registered if version == "all" else [version or self.default]
        rows = [{"modelVersion": v, "modelUrl": f"{model}-{v}.mar", "workers": []} for v in chosen]
        if customized:
            rows[0]["customizedMetadata"] = {"task": "classification", "classes": ["a", "b"]}
        return rows

    def register(self, url: str, **_: Any) -> dict[str, Any]:
        self.calls.append(("register", url))
        version = url.removeprefix(f"{self.model}-").removesuffix(".mar")
        self.registered.append(version)
        return {"status": "ok"}

    def set_default(self, model: str, version: str) -> dict[str, Any]:
        self.calls.append(("set_default", version))
        self.default = version
        return {"status": "ok"}

    def unregister(self, model: str, version: str | None = None) -> dict[str, Any]:
        self.calls.append(("unregister", str(version)))
        if version == self.default and len(self.registered) > 1:
            raise CvserveError(403, "Cannot remove default version", "InvalidModelVersionException")
        self.registered.remove(str(version))
        return {"status": "ok"}

    def predict_many(self, images: list[bytes], model: str, version: str | None = None) -> Any:
        right = round(self.accuracy[str(version)] * len(images))
        labels = ["a"] * right + ["b"] * (len(images) - right)
        return {"predictions": [{"label": label} for label in labels]}


def all_a(candidate: dict[str, Any], default: dict[str, Any]) -> ValidationSet:
    """10 samples, all labelled "a"."""
    return ValidationSet(candidate["task"], [Sample(b"png", "a")] * 10, "fake", ["a", "b"])


def test_promote_accepts_a_good_candidate_and_records_the_previous_default(tmp_path) -> None:
    server = FakeServer("m", ["1.0"], {"1.0": 0.8, "2.0": 0.9})
    history = History(tmp_path / "h.json")
    report = promote(server, "m", "2.0", all_a, history=history)
    assert report.decision == "promoted" and report.promoted
    assert report.scores["candidate"]["value"] == 0.9 and report.samples == 10
    assert server.default == "2.0" and report.default_after == "2.0"
    assert ("register", "m-2.0.mar") in server.calls
    assert history.previous("m") == ["1.0"]

    assert rollback(server, "m", history) == {
        "model": "m", "from": "2.0", "to": "1.0", "previous_found_in": "history",
    }  # fmt: skip
    assert server.default == "1.0" and history.previous("m") == []


def test_promote_refuses_a_worse_candidate_and_unregisters_it(tmp_path) -> None:
    server = FakeServer("m", ["1.0"], {"1.0": 0.9, "3.0": 0.1})
    history = History(tmp_path / "h.json")
    report = promote(server, "m", "3.0", all_a, history=history)
    assert report.decision == "rejected" and not report.promoted
    assert "3.0 unregistered" in report.reason
    assert server.default == "1.0" and server.registered == ["1.0"]
    assert history.previous("m") == []


def test_force_skips_the_validation(tmp_path) -> None:
    server = FakeServer("m", ["1.0"], {"1.0": 0.9, "3.0": 0.1})

    def never(candidate: dict[str, Any], default: dict[str, Any]) -> ValidationSet:
        raise AssertionError("--force must not load a validation set")

    report = promote(server, "m", "3.0", never, force=True, history=History(tmp_path / "h"))
    assert report.decision == "forced" and server.default == "3.0"


def test_promote_of_the_default_is_an_error(tmp_path) -> None:
    server = FakeServer("m", ["1.0"], {"1.0": 0.9})
    with pytest.raises(VersionError, match="already the default"):
        promote(server, "m", "1.0", all_a)


def test_validation_failure_unregisters_the_candidate() -> None:
    server = FakeServer("m", ["1.0"], {"1.0": 0.9, "2.0": 0.9})

    def broken(candidate: dict[str, Any], default: dict[str, Any]) -> ValidationSet:
        raise FileNotFoundError("no such folder")

    with pytest.raises(FileNotFoundError):
        promote(server, "m", "2.0", broken)
    assert server.registered == ["1.0"] and server.default == "1.0"


def test_rollback_without_history_uses_the_only_other_version() -> None:
    server = FakeServer("m", ["2.0", "1.0"], {})
    assert rollback(server, "m", None)["to"] == "1.0"
    server.registered.append("3.0")
    with pytest.raises(VersionError, match="set-default"):
        rollback(server, "m", None)


def test_retire_explains_the_default_and_removes_others(tmp_path) -> None:
    server = FakeServer("m", ["1.0", "2.0"], {})
    history = History(tmp_path / "h.json")
    history.push("m", "2.0")
    with pytest.raises(VersionError, match=r"is the default version of m.*rollback m"):
        retire(server, "m", "1.0", history)
    assert server.registered == ["1.0", "2.0"]  # nothing was sent to the server
    assert retire(server, "m", "2.0", history)["retired"] == "2.0"
    assert history.previous("m") == []
    with pytest.raises(VersionError, match="only version"):
        retire(server, "m", "1.0", history)
    with pytest.raises(VersionError, match="no version 9"):
        retire(server, "m", "9", history)


def test_cli_parses_the_version_commands_next_to_the_old_ones() -> None:
    from tools.client.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["promote", "m", "2.0", "--split", "test", "--limit", "5"])
    assert (args.command, args.model, args.version, args.limit) == ("promote", "m", "2.0", 5)
    assert args.tolerance == 0.01 and not args.force
    with pytest.raises(SystemExit):  # one validation source only
        parser.parse_args(["promote", "m", "2.0", "--split", "test", "--validation", "d"])
    assert parser.parse_args(["rollback", "m"]).command == "rollback"
    assert parser.parse_args(["retire", "m", "1.0"]).version == "1.0"
    assert parser.parse_args(["versions", "m", "--json"]).json
    assert parser.parse_args(["set-default", "m", "1.0"]).command == "set-default"
