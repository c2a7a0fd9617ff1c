"""ResNets in plain PyTorch with torchvision's parameter names (no torchvision needed).

* :func:`cifar_resnet18` - the CIFAR-style ResNet-18 used by SimCLR/CSI/UNODE
  from scratch: 3x3 stride-1 stem, no max-pool, four stages of two basic
  blocks with ``width, 2w, 4w, 8w`` channels (``width=64`` is the standard
  network, 11 M parameters; smaller widths make it affordable on a CPU).
  Feature dimension ``8 * width``.
* :func:`resnet18`, :func:`resnet50`, :func:`wide_resnet50_2` - the ImageNet
  networks with exactly torchvision's ``state_dict`` keys and shapes
  (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``fc``), so a torchvision
  checkpoint loads with :func:`load_resnet`. Feature dimension 512 / 2048 / 2048.

Every network has ``forward_features(x) -> (N, d)`` (global average pooling,
no ``fc``) and ``feature_dim``; ``forward`` adds the ``fc`` layer. Inputs are
whatever the caller normalised; adaptive pooling accepts any size.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from .mobilenet import load_state_file, load_strict

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "cifar_resnet18", "resnet18", "resnet50", "wide_resnet50_2",
           "load_resnet", "ARCHS"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 base_width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 base_width: int = 64) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0))
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + idt)


class ResNet(nn.Module):
    """torchvision-compatible ResNet. ``cifar_stem=True`` swaps the 7x7/2 conv + max-pool stem for a
    3x3/1 conv (CIFAR-style); ``width`` is the channel count of the first stage (64 = standard);
    ``width_per_group`` 128 gives WideResNet-50-2."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], num_classes: int = 1000,
                 width: int = 64, width_per_group: int = 64, cifar_stem: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.inplanes = width
        self.base_width = width_per_group
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = width * 8 * block.expansion
        self.fc = nn.Linear(self.feature_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, down, self.base_width)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, None, self.base_width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def cifar_resnet18(width: int = 64, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool), first-stage ``width`` channels."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, width=width, cifar_stem=True, in_channels=in_channels)


def resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


def wide_resnet50_2(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, width_per_group=128)


ARCHS = {"resnet18": resnet18, "resnet50": resnet50, "wide_resnet50_2": wide_resnet50_2}


def load_resnet(arch: str, path: str | os.PathLike) -> ResNet:
    """Build ``arch`` (resnet18 / resnet50 / wide_resnet50_2) and load a torchvision-named weights
    file (``.safetensors``, or a torch tensor-dict file read with ``weights_only=True``).
    ``num_classes`` is read from ``fc.weight``; a missing/unexpected key or wrong shape is an error."""
    if arch not in ARCHS:
        raise ValueError(f"unknown ResNet architecture {arch!r}; choose from {', '.join(ARCHS)}")
    state = load_state_file(path)
    if "fc.weight" not in state:
        raise ValueError(f"{path}: no 'fc.weight'; not a torchvision ResNet state dict")
    model = ARCHS[arch](num_classes=int(state["fc.weight"].shape[0]))
    load_strict(model, state, path, arch)
    return model.eval()
