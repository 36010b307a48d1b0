"""Every registered architecture: shapes and gradients for 1 and 3 channels and odd sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import model_src
from model_src import build_model, default_target_layer, list_models, register_model

# (arch, kwargs) for each registered model; input sizes chosen to include odd ones.
CLASSIFIERS = [
    ("mlp", {"hidden_sizes": [32, 16], "dropout": 0.1}),
    ("skip_mlp", {"hidden_sizes": [32, 32, 16]}),
    ("convnet", {"channels": [8, 16], "dropout": 0.1}),
    ("tinyvgg", {"hidden_units": 4}),
    ("timm", {"model_name": "resnet18"}),
]
SIZES = [(28, 28), (33, 45)]
TORCHVISION_SEGMENTERS = ["lraspp", "deeplabv3"]  # model_src/torchvision_seg.py


def test_every_registered_architecture_is_covered() -> None:
    covered = {a for a, _ in CLASSIFIERS} | {"unet", *TORCHVISION_SEGMENTERS}
    assert covered == set(list_models())


@pytest.mark.parametrize("arch", TORCHVISION_SEGMENTERS)
@pytest.mark.parametrize("channels", [1, 3])
def test_torchvision_segmenter_returns_logits_at_the_input_size(arch, channels) -> None:
    """The dict torchvision returns is unwrapped inside the module: a plain tensor."""
    torch.manual_seed(0)
    model = build_model(arch, in_channels=channels, num_classes=5, input_size=[37, 51])
    x = torch.randn(2, channels, 37, 51, requires_grad=True)
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, 37, 51)
    out.mean().backward()
    assert torch.isfinite(x.grad).all()
    assert isinstance(default_target_layer(model), nn.Module)


@pytest.mark.parametrize("arch,kwargs", CLASSIFIERS, ids=[a for a, _ in CLASSIFIERS])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_classifier_shapes_and_gradients(arch, kwargs, channels, size) -> None:
    torch.manual_seed(0)
    model = build_model(arch, in_channels=channels, num_classes=7, input_size=size, **kwargs)
    x = torch.randn(2, channels, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert isinstance(default_target_layer(model), nn.Module)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("bilinear", [True, False])
@pytest.mark.parametrize("size", [(64, 64), (37, 51), (9, 7)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_unet_output_matches_input_size(channels, bilinear, size) -> None:
    torch.manual_seed(0)
    model = build_model(
        "unet", in_channels=channels, num_classes=3, depth=3, base_width=4, bilinear=bilinear
    )
    x = torch.randn(2, channels, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 3, *size)
    out.mean().backward()
    assert torch.isfinite(x.grad).all()


def test_unet_binary_has_one_logit() -> None:
    out = build_model("unet", num_classes=1, base_width=4)(torch.randn(1, 1, 20, 20))
    assert out.shape == (1, 1, 20, 20)


def test_skip_mlp_bridges_width_changes() -> None:
    model = build_model("skip_mlp", input_size=(4, 4), hidden_sizes=[8, 8, 3])
    bridges = [type(b.bridge).__name__ for b in model.blocks]
    assert bridges == ["Linear", "Identity", "Linear"]


def test_unknown_architecture_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model architecture 'resnet'.*tinyvgg"):
        build_model("resnet")


def test_registering_a_name_twice_raises() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_model("mlp")(model_src.mlp.mlp)


def test_timm_pretrained_loads_only_from_a_local_file(tmp_path) -> None:
    torch.manual_seed(0)
    source = build_model("timm", model_name="resnet18", num_classes=1000, in_channels=3)
    weights = tmp_path / "resnet18.pth"
    torch.save(source.model.state_dict(), weights)
    model = build_model(
        "timm", model_name="resnet18", num_classes=4, in_channels=3, pretrained_path=str(weights)
    )
    # The backbone comes from the file; timm re-initialises the mismatched classifier head.
    assert torch.equal(model.model.conv1.weight, source.model.conv1.weight)
    assert model.model.fc.out_features == 4
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_model("timm", model_name="resnet18", pretrained_path=str(tmp_path / "none.pth"))


def test_tinyvgg_default_target_layer_is_not_inplace() -> None:
    layer = default_target_layer(build_model("tinyvgg"))
    assert isinstance(layer, nn.ReLU) and not layer.inplace
