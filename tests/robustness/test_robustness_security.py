"""Auth and exposure beyond tests/integration/test_security.py (which covers the token on
/ping, predictions, the workflow, GET /models and /workflows, the store-only URLs for
http(s)/file/../absolute, and the client's key rotation).

Added here: the token on every other route (explanations, describe, scale, register,
unregister, set-default, the token API itself), more ways to name a file outside the model
store, every listening socket of the server's processes on loopback only, and the metrics
page carrying no key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from corpus import digit_image, encode

from tools.serve import REPO_ROOT
from tools.tsconfig import host_of, read_properties

pytestmark = pytest.mark.integration


def keys(ts_server: Any) -> dict[str, str]:
    raw = json.loads(Path(ts_server.key_file).read_text())
    return {kind: raw[kind]["key"] for kind in ("inference", "management", "API")}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# (api, method, path, params, the key kind that works)
ROUTES = [
    ("inference", "POST", "/explanations/digit_classifier", None, "inference"),
    ("inference", "POST", "/predictions/digit_segmenter/1.0", None, "inference"),
    ("management", "GET", "/models/digit_classifier", None, "management"),
    ("management", "GET", "/models/digit_classifier/all", None, "management"),
    ("management", "PUT", "/models/digit_classifier", {"min_worker": 1}, "management"),
    ("management", "PUT", "/models/digit_classifier/1.0/set-default", None, "management"),
    ("management", "GET", "/workflows/digit_pipeline", None, "management"),
    ("management", "POST", "/models", {"url": "digit_classifier.mar"}, None),
    ("management", "DELETE", "/models/digit_classifier/1.0", None, None),
    ("management", "DELETE", "/workflows/digit_pipeline", None, None),
    ("management", "GET", "/token", {"type": "inference"}, None),
]


@pytest.mark.parametrize(
    ("api", "method", "path", "params", "works"),
    ROUTES,
    ids=[f"{m} {p}" for _, m, p, _, _ in ROUTES],
)
def test_every_route_needs_the_right_key(ts_server, api, method, path, params, works) -> None:
    """No key, a wrong key, and each wrong kind of key -> 400 InvalidKeyException.

    Routes whose `works` is None change the server (register, unregister, rotate): only the
    refusals are sent, and the model is still there afterwards.
    """
    ks = keys(ts_server)
    url = getattr(ts_server.addresses, api) + path
    body = encode(digit_image(), "PNG") if api == "inference" else None
    wrong = [{}, bearer("not-a-key"), bearer(""), {"Authorization": ks["inference"]}]
    # the token API takes only the API key; every other route only its own kind
    right_kind = (
        "API" if path == "/token" else ("inference" if api == "inference" else "management")
    )
    wrong += [bearer(ks[kind]) for kind in ks if kind != right_kind]
    for headers in wrong:
        resp = requests.request(
            method, url, params=params, data=body, headers={**headers, "Content-Type": "image/png"},
            timeout=60,
        )  # fmt: skip
        assert resp.status_code == 400, (headers, resp.status_code, resp.text)
        assert resp.json()["type"] == "InvalidKeyException", resp.text
    if works:
        resp = requests.request(
            method, url, params=params, data=body,
            headers={**bearer(ks[works]), "Content-Type": "image/png"}, timeout=60,
        )  # fmt: skip
        assert resp.status_code in (200, 202), resp.text
    models = requests.get(
        ts_server.addresses.management + "/models", headers=bearer(ks["management"]), timeout=30
    ).json()["models"]
    assert {"digit_classifier", "digit_segmenter"} <= {m["modelName"] for m in models}
    assert keys(ts_server) == ks  # no refused call rotated a key


@pytest.fixture(scope="module")
def outside(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real, valid archives OUTSIDE the model store, under names the store does not have
    (so a refusal cannot be a name clash or a missing file in disguise)."""
    folder = tmp_path_factory.mktemp("outside_the_store")
    files = {
        "mar": folder / "outside_model.mar",
        "war": folder / "outside_flow.war",
    }
    shutil.copy(model_store / "digit_classifier.mar", files["mar"])
    shutil.copy(model_store / "digit_pipeline.war", files["war"])
    files["store"] = model_store
    return files


def outside_urls(path: Path, store: Path) -> list[str]:
    relative = os.path.relpath(path, store)
    return [
        str(path),  # absolute path
        f"file://{path}",
        relative,  # ../../outside_the_store0/outside_model.mar
        f"sub/../{relative}",
        relative.replace("/", "\\"),
        relative.replace("..", "%2e%2e"),
        f"jar:file://{path}!/MAR-INF/MANIFEST.json",
        f"ftp://127.0.0.1/{path.name}",
        f"//127.0.0.1{path}",
    ]


def registered(ts_server: Any, what: str) -> set[str]:
    resp = requests.get(
        f"{ts_server.addresses.management}/{what}",
        headers=bearer(keys(ts_server)["management"]),
        timeout=30,
    )
    key = "modelName" if what == "models" else "workflowName"
    return {m[key] for m in resp.json()[what]}


@pytest.mark.parametrize("index", range(9))
def test_model_archive_outside_the_store_refused(ts_server, outside, index: int) -> None:
    url = outside_urls(outside["mar"], outside["store"])[index]
    name = f"outside_{index}"
    resp = requests.post(
        ts_server.addresses.management + "/models",
        params={"url": url, "model_name": name, "initial_workers": 1, "synchronous": "true"},
        headers=bearer(keys(ts_server)["management"]),
        timeout=120,
    )
    try:
        assert 400 <= resp.status_code < 500, (url, resp.status_code, resp.text)
        assert name not in registered(ts_server, "models"), url
    finally:
        if name in registered(ts_server, "models"):
            requests.delete(
                f"{ts_server.addresses.management}/models/{name}",
                headers=bearer(keys(ts_server)["management"]),
                timeout=60,
            )


def test_workflow_archive_outside_the_store_refused(ts_server, outside) -> None:
    refused = []
    for index, url in enumerate(outside_urls(outside["war"], outside["store"])):
        name = f"outside_flow_{index}"
        resp = requests.post(
            ts_server.addresses.management + "/workflows",
            params={"url": url, "workflow_name": name},
            headers=bearer(keys(ts_server)["management"]),
            timeout=120,
        )
        if name in registered(ts_server, "workflows"):
            requests.delete(
                f"{ts_server.addresses.management}/workflows/{name}",
                headers=bearer(keys(ts_server)["management"]),
                timeout=60,
            )
        else:
            refused.append(url)
        assert 400 <= resp.status_code < 500, (url, resp.status_code, resp.text)
    assert len(refused) == len(outside_urls(outside["war"], outside["store"]))


def test_config_addresses_are_loopback() -> None:
    props = read_properties(REPO_ROOT / "config.properties")
    for key in ("inference_address", "management_address", "metrics_address"):
        assert is_loopback(host_of(props[key])), (key, props[key])
    assert props.get("disable_token_authorization", "false").lower() == "false"
    assert props["allowed_urls"] == "^$"


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1, also written as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def server_processes(ts_server: Any) -> list[psutil.Process]:
    frontend = psutil.Process(ts_server.state["pid"])
    return [frontend, *frontend.children(recursive=True)]


def test_server_listens_on_loopback_only(ts_server) -> None:
    """Every listening socket of the frontend and its workers (HTTP and gRPC) is loopback."""
    pids = {p.pid for p in server_processes(ts_server)}
    listening = [
        c
        for c in psutil.net_connections(kind="inet")
        if c.pid in pids and c.status == psutil.CONN_LISTEN
    ]
    ports = {c.laddr.port for c in listening}
    for address in (ts_server.addresses.inference, ts_server.addresses.management):
        assert int(address.rsplit(":", 1)[1]) in ports, (address, listening)
    exposed = [c.laddr for c in listening if not is_loopback(c.laddr.ip)]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_metrics_page_shows_no_key(ts_server, ts_client) -> None:
    ts_client.predict(encode(digit_image(), "PNG"), "digit_classifier")  # some metrics exist
    resp = requests.get(ts_server.addresses.metrics + "/metrics", timeout=30)
    assert resp.status_code == 200
    assert "ts_inference_requests_total" in resp.text
    for kind, key in keys(ts_server).items():
        assert key not in resp.text, f"the {kind} key is on the metrics page"
    assert "Bearer" not in resp.text and "key_file" not in resp.text
