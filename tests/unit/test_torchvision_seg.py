"""torchvision's LR-ASPP and DeepLabV3 in cvserve's zoo: the card's output key and pretrained
weights only from a local file (shapes and gradients: test_models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_src import build_model


def test_output_key_selects_the_dict_entry() -> None:
    with pytest.raises(KeyError):
        build_model("lraspp", in_channels=1, num_classes=3, output_key="logits")(
            torch.zeros(1, 1, 32, 32)
        )


def test_pretrained_weights_come_from_a_local_file_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_model("lraspp", in_channels=3, num_classes=21)
    path = tmp_path / "lraspp.pth"
    torch.save(source.model.state_dict(), path)
    # Another head and another stem: those tensors are skipped, the rest is loaded.
    model = build_model("lraspp", in_channels=1, num_classes=11, pretrained_path=str(path))
    got, want = model.model.state_dict(), source.model.state_dict()
    key = "backbone.1.block.0.0.weight"
    assert torch.equal(got[key], want[key])
    assert got["backbone.0.0.weight"].shape[1] == 1
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_model("lraspp", pretrained_path=str(tmp_path / "missing.pth"))


def test_bn_momentum_reaches_every_batchnorm() -> None:
    momenta = {
        m.momentum
        for m in build_model("deeplabv3", in_channels=1, num_classes=3, bn_momentum=0.1).modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    }
    assert momenta == {0.1}
    default = build_model("lraspp", in_channels=1, num_classes=3)  # torchvision's own values
    backbone = [m for m in default.model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {m.momentum for m in backbone} == {0.01}
