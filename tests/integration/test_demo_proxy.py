"""The demo proxy (tools/demo) against the real session server, without a browser.

What matters: the page's calls pass and answer per docs/api.md; nothing else of TorchServe does
(above all no management call but the model listing); no key ever appears in an answer; bodies
over the limit get 413 before they are read; every error is JSON with a message in words.
"""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path

import pytest
import requests

from handlers.png import class_palette
from tools.demo.catalog import hex_colours
from tools.demo.routes import RouteError, resolve
from tools.demo.server import (
    DemoServer,
    DemoSettings,
    build_parser,
    running_demo,
)
from tools.sandbox import free_ports
from tools.tsconfig import read_keys, read_properties, rewrite_properties

pytestmark = pytest.mark.integration


# ---- the allow-list, no server needed -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kind", "name", "version"),
    [
        ("GET", "/", "static", "", None),
        ("GET", "/app.js", "static", "", None),
        ("GET", "/api/models", "models", "", None),
        ("POST", "/api/predictions/digit_classifier", "predictions", "digit_classifier", None),
        ("POST", "/api/predictions/digit_classifier/2.0", "predictions", "digit_classifier", "2.0"),
        ("POST", "/api/explanations/digit_classifier", "explanations", "digit_classifier", None),
        ("POST", "/api/wfpredict/digit_pipeline", "wfpredict", "digit_pipeline", None),
    ],
)
def test_routes_allowed(method: str, path: str, kind: str, name: str, version: str | None) -> None:
    route = resolve(method, path)
    assert (route.kind, route.name, route.version) == (kind, name, version)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/models", 404),  # TorchServe's own management paths are not mapped
        ("GET", "/api/models/digit_classifier/all", 404),
        ("POST", "/api/models", 405),  # register
        ("DELETE", "/api/models", 405),
        ("PUT", "/api/predictions/digit_classifier", 405),
        ("GET", "/api/predictions/digit_classifier", 405),
        ("GET", "/api/token", 404),
        ("GET", "/ping", 404),
        ("GET", "/metrics", 404),
        ("POST", "/api/predictions/../models", 404),
        ("POST", "/api/predictions/..", 404),
        ("POST", "/api/predictions/a%2Fb", 404),
        ("POST", "/api/predictions/digit_pipeline__prepare", 404),  # a workflow's node
        ("POST", "/api/predictions/digit_classifier/1.0/extra", 404),
        ("POST", "/api/wfpredict/digit_pipeline/1.0", 404),  # workflows have no versions
        ("POST", "/api/predictions/", 404),
        ("GET", "/static/../server.py", 404),
    ],
)
def test_routes_blocked(method: str, path: str, status: int) -> None:
    with pytest.raises(RouteError) as info:
        resolve(method, path)
    assert info.value.status == status


def test_listens_on_loopback_by_default() -> None:
    assert build_parser().parse_args([]).host == "127.0.0.1"


def test_legend_colours_are_the_mask_palette() -> None:
    palette = class_palette(11)
    assert hex_colours(11)[3] == "#{:02x}{:02x}{:02x}".format(*(int(c) for c in palette[3]))
    assert hex_colours(11)[0] == "#000000"


# ---- against the session's TorchServe -------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def api_url(demo: DemoServer, path: str) -> str:
    return demo.url.rstrip("/") + path


def test_page_and_its_files(demo: DemoServer) -> None:
    page = requests.get(demo.url, timeout=10)
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert 'src="app.js"' in page.text and "http" not in page.text.split("<body>")[0]
    for name in ("app.js", "style.css"):
        assert requests.get(demo.url + name, timeout=10).status_code == 200


def test_model_listing(demo: DemoServer) -> None:
    resp = requests.get(api_url(demo, "/api/models"), timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    models = {m["name"]: m for m in body["models"]}
    assert set(models) == {"digit_classifier", "digit_segmenter"}  # no workflow nodes
    assert models["digit_classifier"]["task"] == "classification"
    seg = models["digit_segmenter"]["versions"][0]
    assert seg["default"] and seg["classes"][0] == "background"
    assert len(seg["colors"]) == len(seg["classes"])
    assert body["workflows"] == [{"name": "digit_pipeline"}]
    assert body["max_body"] == int(read_properties(demo.settings.config)["max_request_size"])


def test_predict_explain_pipeline(demo: DemoServer, digits: list[tuple[bytes, str]]) -> None:
    image = b64(digits[0][0])
    resp = requests.post(
        api_url(demo, "/api/predictions/digit_classifier/1.0"),
        json={"image": image, "topk": 3},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["topk"]) == 3
    assert resp.headers["Server-Timing"].startswith("torchserve;dur=")
    resp = requests.post(
        api_url(demo, "/api/explanations/digit_classifier"),
        json={"image": image, "method": "saliency", "target": 3},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["target"]["index"] == 3 and resp.json()["overlay_png"]
    resp = requests.post(
        api_url(demo, "/api/predictions/digit_segmenter"),
        json={"image": "data:image/png;base64," + image, "overlay": True},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["overlay_png"] and "class_pixels" in resp.json()
    resp = requests.post(api_url(demo, "/api/wfpredict/digit_pipeline"), json={"image": image})
    assert resp.status_code == 200, resp.text
    assert "labels" in resp.json()


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/predictions/digit_classifier", {"image": b64(b"not an image")}, 400, "decoded"),
        ("/api/wfpredict/digit_pipeline", {"image": b64(b"not an image")}, 400, "decoded"),
        ("/api/predictions/digit_classifier", {"image": "%%%"}, 400, "base64"),
        ("/api/predictions/digit_classifier", {"picture": "x"}, 400, '"image"'),
        ("/api/predictions/no_such_model", {"image": b64(b"x")}, 404, "no_such_model"),
    ],
)
def test_errors_in_words(demo: DemoServer, path: str, body: dict, status: int, words: str) -> None:
    resp = requests.post(api_url(demo, path), json=body, timeout=60)
    assert resp.status_code == status
    assert words in resp.json()["message"]


def test_invalid_option_is_422(demo: DemoServer, digits: list[tuple[bytes, str]]) -> None:
    resp = requests.post(
        api_url(demo, "/api/predictions/digit_classifier"),
        json={"image": b64(digits[0][0]), "topk": 99},
        timeout=60,
    )
    assert resp.status_code == 422 and "topk" in resp.json()["message"]


def test_only_json_posts(demo: DemoServer, digits: list[tuple[bytes, str]]) -> None:
    """A cross-site form can send only form/text bodies, which are refused."""
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
        resp = requests.post(
            api_url(demo, "/api/predictions/digit_classifier"),
            data=digits[0][0],
            headers={"Content-Type": ctype},
            timeout=30,
        )
        assert resp.status_code == 415, ctype


def test_management_calls_do_not_pass(demo: DemoServer, ts_client: object) -> None:
    before = ts_client.describe("digit_classifier")[0]["minWorkers"]
    calls = [
        ("DELETE", "/api/models/digit_classifier"),
        ("DELETE", "/models/digit_classifier"),
        ("PUT", "/models/digit_classifier?min_worker=3"),
        ("PUT", "/api/models/digit_classifier/1.0/set-default"),
        ("POST", "/api/models?url=digit_classifier.mar"),
        ("POST", "/workflows?url=digit_pipeline.war"),
        ("GET", "/token?type=inference"),
        ("GET", "/api/models/digit_classifier"),
        ("OPTIONS", "/api/predictions/digit_classifier"),
    ]
    for method, path in calls:
        resp = requests.request(method, api_url(demo, path), timeout=30)
        assert resp.status_code in (404, 405), (method, path, resp.status_code)
        assert resp.json()["message"]
    assert ts_client.describe("digit_classifier")[0]["minWorkers"] == before
    assert {m["modelName"] for m in ts_client.models()} >= {"digit_classifier"}


def test_keys_never_in_answers(
    demo: DemoServer, ts_server: object, digits: list[tuple[bytes, str]]
) -> None:
    image = b64(digits[1][0])
    answers = [
        requests.get(demo.url, timeout=10),
        requests.get(demo.url + "app.js", timeout=10),
        requests.get(api_url(demo, "/api/models"), timeout=60),
        requests.post(api_url(demo, "/api/predictions/digit_classifier"), json={"image": image}),
        requests.post(api_url(demo, "/api/explanations/digit_classifier"), json={"image": image}),
        requests.post(api_url(demo, "/api/wfpredict/digit_pipeline"), json={"image": image}),
        requests.post(api_url(demo, "/api/predictions/digit_classifier"), json={"image": "x"}),
        requests.get(api_url(demo, "/models"), timeout=10),
    ]
    keys = read_keys(ts_server.key_file).values()
    for resp in answers:
        text = resp.text + json.dumps(dict(resp.headers))
        assert "Authorization" not in resp.headers
        for key in keys:
            assert key not in text, resp.url


def test_host_header_checked(demo: DemoServer) -> None:
    """DNS rebinding: a page from evil.example resolving to 127.0.0.1 sends its own Host."""
    resp = requests.get(api_url(demo, "/api/models"), headers={"Host": "evil.example"}, timeout=10)
    assert resp.status_code == 403


def test_body_limit(ts_server: object) -> None:
    settings = DemoSettings(
        config=ts_server.spec.config, key_file=ts_server.key_file, max_body=2000
    )
    with running_demo(settings) as server:
        url = server.url + "api/predictions/digit_classifier"
        resp = requests.post(url, json={"image": b64(bytes(3000))}, timeout=30)
        assert resp.status_code == 413 and "limit is 2000 bytes" in resp.json()["message"]
        # A huge declared length is refused from the header alone, nothing read.
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.putrequest("POST", "/api/predictions/digit_classifier")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(10**9))
        conn.endheaders()
        answer = conn.getresponse()
        assert answer.status == 413
        conn.close()
        # Under the limit still works on a fresh connection.
        small = requests.post(url, json={"image": b64(b"tiny")}, timeout=30)
        assert small.status_code == 400


def test_server_down_is_502_in_words(ts_server: object, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = tmp_path / "config.properties"
    text = Path(ts_server.spec.config).read_text()
    config.write_text(rewrite_properties(text, {
        "inference_address": f"http://127.0.0.1:{port}",
        "management_address": f"http://127.0.0.1:{port}",
    }))  # fmt: skip
    settings = DemoSettings(config=config, key_file=ts_server.key_file, timeout=5)
    with running_demo(settings) as server:
        resp = requests.get(server.url + "api/models", timeout=30)
        assert resp.status_code == 502 and "not reachable" in resp.json()["message"]
        resp = requests.post(
            server.url + "api/predictions/digit_classifier", json={"image": b64(b"x")}, timeout=30
        )
        assert resp.status_code == 502
    settings = DemoSettings(config=config, key_file=tmp_path / "missing.json", timeout=5)
    with running_demo(settings) as server:
        resp = requests.get(server.url + "api/models", timeout=30)
        assert resp.status_code == 502 and "missing.json" in resp.json()["message"]
