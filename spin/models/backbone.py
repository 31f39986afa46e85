"""Image encoders for the regressor: torchvision ResNets, weights only from a local file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models

from spin.errors import UserError

# Feature width of the pooled output of each supported torchvision ResNet.
BACKBONE_FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


class ResNetEncoder(nn.Module):
    """A torchvision ResNet without its classifier: image (B,3,H,W) → pooled feature (B, C).

    Global average pooling is adaptive, so any input resolution ≥ 32 px works (SPIN's fixed
    7×7 pool only fits 224 px inputs).
    """

    def __init__(self, name: str = "resnet50", weights_path: str | Path | None = None, in_channels: int = 3):
        super().__init__()
        if name not in BACKBONE_FEATURES:
            raise UserError(f"model.backbone '{name}' is not supported; "
                            f"use one of {sorted(BACKBONE_FEATURES)}.")
        # weights=None: torchvision never downloads anything here.
        net = getattr(tv_models, name)(weights=None)
        if weights_path is not None:
            load_imagenet_weights(net, weights_path)
        if in_channels != 3:
            # NBF's non-RGB inputs (silhouette, part maps, heatmaps): a fresh first conv of the same
            # geometry; the ImageNet weights of the rest still apply.
            old = net.conv1
            net.conv1 = nn.Conv2d(in_channels, old.out_channels, kernel_size=old.kernel_size,
                                  stride=old.stride, padding=old.padding, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = BACKBONE_FEATURES[name]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B,in_channels,H,W) (RGB: ImageNet-normalised) → features (B, num_features)."""
        return self.pool(self.layers(self.stem(images))).flatten(1)


def load_imagenet_weights(net: nn.Module, weights_path: str | Path) -> None:
    """Load a torchvision ResNet state dict (e.g. `resnet50-0676ba61.pth`) from the user's disk.

    The classifier (`fc.*`) may be absent or of another size; every other parameter must match.
    """
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise UserError(f"model.pretrained file {path} does not exist; give the path of a torchvision "
                        "ResNet state dict (.pth) or set model.pretrained=null to start from random weights.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"model.pretrained file {path} is not a readable torch state dict ({err}).") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    wanted = {k for k in net.state_dict() if not k.startswith("fc.")}
    missing, unexpected = wanted - set(state), set(state) - wanted
    if missing or unexpected:
        example = sorted(missing or unexpected)[0]
        raise UserError(f"model.pretrained file {path} does not match model.backbone "
                        f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. '{example}'); "
                        "give the ImageNet weights of the same ResNet depth.")
    try:
        net.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise UserError(f"model.pretrained file {path} has tensors of the wrong shape for model.backbone "
                        f"({str(err).splitlines()[0]}).") from None
