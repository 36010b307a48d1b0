"""The bench's in-process paths on a tiny random model: the limit, the Flask app (test
client, no socket) and the LitServe API's batch methods, all giving docs/api.md's answer.

Correctness only; no timing assertions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from model_src import InputSpec, ModelCard, build_model, save_checkpoint
from tools.bench import inprocess
from tools.bench.subjects import image_payload, load_handler, payload_row


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    classes = [str(i) for i in range(3)]
    kwargs = {"in_channels": 1, "num_classes": 3, "input_size": [16, 16], "hidden_units": 2}
    card = ModelCard(
        "tiny_bench",
        "classification",
        "tinyvgg",
        kwargs,
        classes,
        InputSpec(size=(16, 16), channels=1, mean=(0.5,), std=(0.25,)),
    )
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    return save_checkpoint(path, build_model("tinyvgg", **kwargs), card)


@pytest.fixture(scope="module")
def payload() -> bytes:
    return image_payload(Image.new("L", (20, 20), 128))


def test_handler_limit_and_forward(checkpoint: Path, payload: bytes) -> None:
    handler = load_handler(checkpoint)
    points = inprocess.handler_limit(handler, payload, [4, 1], seconds=0.05)
    assert [p.batch_size for p in points] == [1, 4]
    assert all(p.wall_s >= 0.05 and p.images_per_s > 0 for p in points)
    assert points[1].images % 4 == 0 and not points[1].compiled
    assert inprocess.best(points) in points
    forward = inprocess.forward_limit(handler, payload, [2], seconds=0.0)  # one call at least
    assert forward[0].batch_size == 2 and forward[0].images == 2
    assert forward[0].threads == torch.get_num_threads()
    repeated = inprocess.repeat_point(
        lambda s: inprocess.forward_limit(handler, payload, [1], s), 0.0, 3
    )
    assert len(repeated) == 3


def test_the_archive_model_config_sets_threads_read_back(checkpoint: Path) -> None:
    before = torch.get_num_threads()
    try:
        handler = load_handler(checkpoint, {"maxWorkers": 1, "handler": {"torch_threads": 1}})
        runtime = handler.runtime()
        assert runtime["torch_threads"] == 1 and runtime["compiled"] is False
        assert runtime["backend"] == "eager" and handler.describe()["runtime"] == runtime
    finally:
        torch.set_num_threads(before)


def test_explanations_in_process(checkpoint: Path) -> None:
    handler = load_handler(checkpoint)
    body = image_payload(Image.new("L", (16, 16), 10), method="saliency")
    [point] = inprocess.handler_limit(handler, body, [1], seconds=0.0, explain=True)
    assert point.images == 1
    answer = inprocess.reference_answer(handler, body, explain=True)
    assert answer["method"] == "saliency" and "label" in answer["target"]


def test_flask_app_answers_like_torchserve(checkpoint: Path, payload: bytes) -> None:
    from tools.bench.flask_server import create_app

    handler = load_handler(checkpoint)
    client = create_app(handler).test_client()
    resp = client.post(
        "/predictions/tiny_bench", data=payload, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 200
    direct = handler.handle([payload_row(payload)], None)[0]
    assert resp.get_json()["label"] == direct["label"]
    bad = client.post("/predictions/tiny_bench", json={"image": "bm90IGFuIGltYWdl"})
    assert bad.status_code == 400


def test_litserve_api_batches_through_the_handler(
    checkpoint: Path, payload: bytes, tmp_path: Path
) -> None:
    import json
    import os
    import pickle

    from tools.bench.litserve_server import HandlerAPI
    from tools.bench.subjects import read_runtimes

    config = {"maxWorkers": 2, "batchSize": 4, "handler": {"torch_threads": 1}}
    before = torch.get_num_threads()
    try:
        api = HandlerAPI(checkpoint, config, str(tmp_path), max_batch_size=4, batch_timeout=0.001)
        api.setup("cpu")
    finally:
        torch.set_num_threads(before)
    [runtime] = read_runtimes(tmp_path)
    assert runtime["pid"] == os.getpid() and runtime["torch_threads"] == 1
    bad = {"image": "bm90IGFuIGltYWdl"}
    rows = api.batch([api.decode_request(json.loads(payload)) for _ in range(3)])
    rows.insert(1, api.decode_request(bad))
    replies = [api.encode_response(r) for r in api.unbatch(api.predict(rows))]
    assert [r["label"] for r in (replies[0], replies[2], replies[3])] == [replies[0]["label"]] * 3
    # the refused request keeps the handler's status (a batch neighbour is not failed)
    refused = pickle.loads(pickle.dumps(replies[1]))  # crosses LitServe's process queue
    assert refused.status_code == 400
    assert json.loads(refused.body)["error"]["status"] == 400
    single = api.encode_response(api.predict(api.decode_request(json.loads(payload))))
    assert single["label"] == replies[0]["label"]


def test_gunicorn_app_factory_reads_the_environment(
    checkpoint: Path, payload: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from tools.bench import flask_server
    from tools.bench.subjects import read_runtimes

    monkeypatch.setenv(flask_server.ENV_CHECKPOINT, str(checkpoint))
    monkeypatch.setenv(flask_server.ENV_MODEL_CONFIG, json.dumps({"handler": {"torch_threads": 1}}))
    monkeypatch.setenv(flask_server.ENV_RUNTIME_DIR, str(tmp_path))
    before = torch.get_num_threads()
    try:
        client = flask_server.app_from_env().test_client()
    finally:
        torch.set_num_threads(before)
    assert [r["torch_threads"] for r in read_runtimes(tmp_path)] == [1]
    resp = client.post("/predictions/x", data=payload, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200 and "label" in resp.get_json()
