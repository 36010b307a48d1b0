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
    points = inprocess.handler_limit(handler, payload, [1, 4], images=8)
    assert [p.batch_size for p in points] == [1, 4]
    assert all(p.images >= 8 and p.images_per_s > 0 for p in points)
    assert inprocess.best(points) in points
    forward = inprocess.forward_limit(handler, payload, [2], images=4)
    assert forward[0].batch_size == 2 and forward[0].threads == torch.get_num_threads()


def test_explanations_in_process(checkpoint: Path) -> None:
    handler = load_handler(checkpoint)
    body = image_payload(Image.new("L", (16, 16), 10), method="saliency")
    [point] = inprocess.handler_limit(handler, body, [1], images=2, explain=True)
    assert point.images == 2


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


def test_litserve_api_batches_through_the_handler(checkpoint: Path, payload: bytes) -> None:
    import json

    from tools.bench.litserve_server import HandlerAPI

    api = HandlerAPI(checkpoint, max_batch_size=4, batch_timeout=0.001)
    api.setup("cpu")
    rows = api.batch([api.decode_request(json.loads(payload)) for _ in range(3)])
    replies = api.unbatch(api.predict(rows))
    assert len(replies) == 3 and all("label" in r for r in replies)
    single = api.predict(api.decode_request(json.loads(payload)))
    assert single["label"] == replies[0]["label"]
