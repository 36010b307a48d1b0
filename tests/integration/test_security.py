"""Token authorization, allowed URLs and key rotation (docs/torchserve.md, Security defaults)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("api", "path", "method"),
    [
        ("inference", "/ping", "GET"),
        ("inference", "/predictions/digit_classifier", "POST"),
        ("inference", "/wfpredict/digit_pipeline", "POST"),
        ("management", "/models", "GET"),
        ("management", "/workflows", "GET"),
    ],
)
def test_token_required(ts_server, auth_header, digits, api, path, method) -> None:
    url = getattr(ts_server.addresses, api) + path
    other = "management" if api == "inference" else "inference"
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, auth_header(other)):
        resp = requests.request(method, url, data=digits[0][0], headers=headers, timeout=30)
        assert resp.status_code == 400, (headers, resp.text)
        assert resp.json()["type"] == "InvalidKeyException"
    resp = requests.request(
        method,
        url,
        data=digits[0][0],
        timeout=30,
        headers={**auth_header(api), "Content-Type": "image/png"},
    )
    assert resp.status_code == 200, resp.text


def test_metrics_port_needs_no_token(ts_server) -> None:
    assert requests.get(f"{ts_server.addresses.metrics}/metrics", timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:1/evil.mar", "allowed"),
        ("https://example.com/evil.mar", "allowed"),
        ("file:///etc/passwd", "allowed"),
        ("../evil.mar", "Relative path"),
        ("/etc/passwd.mar", "not found"),
        ("no_such_model.mar", "not found"),
    ],
)
def test_urls_outside_the_store_refused(ts_server, auth_header, url, words) -> None:
    resp = requests.post(
        f"{ts_server.addresses.management}/models",
        params={"url": url},
        headers=auth_header("management"),
        timeout=60,
    )
    assert 400 <= resp.status_code < 500, resp.text
    assert words.lower() in resp.json()["message"].lower()


def test_workflow_url_outside_the_store_refused(ts_server, auth_header) -> None:
    resp = requests.post(
        f"{ts_server.addresses.management}/workflows",
        params={"url": "http://127.0.0.1:1/evil.war"},
        headers=auth_header("management"),
        timeout=60,
    )
    assert 400 <= resp.status_code < 500, resp.text


def test_client_follows_a_rotated_key(ts_server, digits) -> None:
    """Someone rotated the inference key: the client re-reads key_file.json and retries."""
    client = ts_server.client()
    client.ping()  # caches the current keys
    keys = json.loads(Path(ts_server.key_file).read_text())
    old = keys["inference"]["key"]
    resp = requests.get(
        f"{ts_server.addresses.management}/token",
        params={"type": "inference"},
        headers={"Authorization": f"Bearer {keys['API']['key']}"},
        timeout=30,
    )
    assert resp.status_code == 200
    new = json.loads(Path(ts_server.key_file).read_text())["inference"]["key"]
    assert new != old
    assert (
        requests.get(
            f"{ts_server.addresses.inference}/ping",
            timeout=30,
            headers={"Authorization": f"Bearer {old}"},
        ).status_code
        == 400
    )
    assert client.predict(digits[0][0], "digit_classifier")["label"]


def test_client_rotates_an_expired_key(ts_server, tmp_path, digits) -> None:
    """The key in key_file.json itself is dead (expired): the client asks /token for a new one.

    Expiry is simulated without waiting an hour: rotate the key on the server, then put the
    old (now invalid) key back into the file, which is what an expired key looks like.
    """
    key_file = Path(ts_server.key_file)
    stale = key_file.read_text()
    backup = tmp_path / "key_file.json"
    shutil.copy(key_file, backup)
    api_key = json.loads(stale)["API"]["key"]
    resp = requests.get(
        f"{ts_server.addresses.management}/token",
        params={"type": "inference"},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert resp.status_code == 200
    key_file.write_text(stale)  # the file now holds a key the server no longer accepts
    client = ts_server.client()
    assert client.predict(digits[0][0], "digit_classifier")["label"]
    fresh = json.loads(key_file.read_text())["inference"]["key"]
    assert fresh != json.loads(stale)["inference"]["key"]
