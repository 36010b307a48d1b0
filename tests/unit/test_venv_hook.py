"""tools.venv_hook: activation exports TS_CONFIG_FILE, deactivate removes it (issue 19)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools import venv_hook


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A real (empty) venv: its activate script is what `make install` patches."""
    path = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def _shell(venv: Path, script: str, env_extra: dict[str, str] | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin", **(env_extra or {})}
    out = subprocess.run(
        ["bash", "-c", f"source {venv}/bin/activate\n{script}"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def test_activation_exports_and_deactivate_unsets(venv: Path) -> None:
    assert "now exports" in venv_hook.install(venv)
    text = (venv / "bin" / "activate").read_text()
    assert "already there" in venv_hook.install(venv)  # idempotent
    assert (venv / "bin" / "activate").read_text() == text
    script = 'echo "$TS_CONFIG_FILE"; deactivate; echo "${TS_CONFIG_FILE:-unset}"'
    assert _shell(venv, script).splitlines() == ["config.properties", "unset"]


def test_a_users_own_ts_config_file_is_kept(venv: Path) -> None:
    venv_hook.install(venv)
    script = 'echo "$TS_CONFIG_FILE"; deactivate; echo "$TS_CONFIG_FILE"'
    out = _shell(venv, script, {"TS_CONFIG_FILE": "/etc/mine.properties"})
    assert out.splitlines() == ["/etc/mine.properties", "/etc/mine.properties"]


def test_refuses_what_is_not_an_activate_script() -> None:
    with pytest.raises(ValueError, match="deactivate"):
        venv_hook.hooked("echo hello\n")
