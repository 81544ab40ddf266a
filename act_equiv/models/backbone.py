"""ResNet image backbones with torchvision's parameter names and frozen batch norm.

LeRobot wraps torchvision's ResNet (FrozenBatchNorm2d, layers up to layer4) so that
`backbone(img)["feature_map"]` is layer4's output. This module rebuilds exactly that tree so state dicts
load `strict=True` both ways, without depending on torchvision.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from act_equiv.config import TINY_BACKBONE

# name -> (stem width, per-stage widths, blocks per stage)
_RESNETS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "resnet18": (64, (64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet34": (64, (64, 128, 256, 512), (3, 4, 6, 3)),
    TINY_BACKBONE: (8, (8, 16, 32, 64), (1, 1, 1, 1)),
}


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, all buffers (torchvision's semantics).

    Train and eval modes compute the same thing, and nothing here receives gradients.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # Checkpoints of a trainable BatchNorm2d carry this counter; frozen batch norm has no use for it.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.reshape(1, -1, 1, 1)
        b = self.bias.reshape(1, -1, 1, 1)
        rv = self.running_var.reshape(1, -1, 1, 1)
        rm = self.running_mean.reshape(1, -1, 1, 1)
        scale = w * (rv + self.eps).rsqrt()
        bias = b - rm * scale
        return x * scale + bias


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False), FrozenBatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """ResNet stem and four stages; `forward(img)` returns `{"feature_map": layer4 output}` (stride 32)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        stem, widths, blocks = _RESNETS[name]
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem
        for index, (planes, count) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(inplanes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(count - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            inplanes = planes
        self.out_channels = inplanes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return {"feature_map": x}
