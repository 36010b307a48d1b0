"""Read what a running TorchServe was told (config.properties) and what it wrote (key_file.json).

`tools.serve`, `tools.client` and the integration tests all need the server's addresses and
tokens; they read them here so there is one parser for each file, never a second copy of the
default addresses.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

#: TorchServe 0.12's own defaults, used for any address a config file leaves out.
DEFAULT_ADDRESSES = {
    "inference_address": "http://127.0.0.1:8080",
    "management_address": "http://127.0.0.1:8081",
    "metrics_address": "http://127.0.0.1:8082",
}
KEY_TYPES = ("inference", "management", "API")
_KEY_FILE_RETRIES = 40


def read_properties(path: str | Path) -> dict[str, str]:
    """Parse a Java-style `key=value` file the way TorchServe's launcher does (`#` comments)."""
    props: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def rewrite_properties(text: str, updates: dict[str, str]) -> str:
    """Replace (or append) `key=value` lines in a properties text, keeping comments and order.

    Used to make a copy of `config.properties` with other ports and paths: the copy keeps
    every other setting and comment, so a test server runs with the shipped configuration.
    """
    remaining = dict(updates)
    out = []
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.]+)\s*=", line)
        if match and match.group(1) in remaining:
            key = match.group(1)
            out.append(f"{key}={remaining.pop(key)}")
        else:
            out.append(line)
    out += [f"{key}={value}" for key, value in remaining.items()]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class ServerAddresses:
    """Base URLs of the three HTTP APIs, without a trailing slash."""

    inference: str
    management: str
    metrics: str

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> ServerAddresses:
        def pick(key: str) -> str:
            return props.get(key, DEFAULT_ADDRESSES[key]).rstrip("/")

        return cls(pick("inference_address"), pick("management_address"), pick("metrics_address"))

    @classmethod
    def from_config(cls, path: str | Path) -> ServerAddresses:
        return cls.from_properties(read_properties(path))


def port_of(url: str) -> int:
    """The port of an `http://host:port` address (TorchServe always writes one)."""
    match = re.search(r":(\d+)/?$", url)
    if not match:
        raise ValueError(f"address {url!r} has no port; write it as http://host:port")
    return int(match.group(1))


def host_of(url: str) -> str:
    """The host of an `http://host:port` address."""
    return re.sub(r"^[a-z]+://", "", url).rsplit(":", 1)[0].strip("[]")


def read_keys(key_file: str | Path) -> dict[str, str]:
    """Tokens from TorchServe's `key_file.json`: {"inference": ..., "management": ..., "API": ...}.

    Raises FileNotFoundError with the fix when the file is missing (the server is not running
    here, or was started with token authorization off).
    """
    path = Path(key_file)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: TorchServe writes it where it was started (the repo root for "
            "`make serve`) and deletes it at stop. Start the server, or pass --key-file."
        )
    # TorchServe rewrites the file in place (at start and on every key rotation): a read can
    # catch it half-written, so retry briefly before calling it broken.
    for attempt in range(_KEY_FILE_RETRIES):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {kind: data[kind]["key"] for kind in KEY_TYPES if kind in data}
        except (json.JSONDecodeError, KeyError, TypeError):
            if attempt == _KEY_FILE_RETRIES - 1:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")
