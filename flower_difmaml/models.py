"""Models of the MAML literature: an MLP for regression and Conv-4 for few-shot images."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .meta.maml import Params


class MLP(nn.Sequential):
    """Fully connected ReLU network, e.g. ``MLP((1, 40, 40, 1))`` for sinusoids."""

    def __init__(self, sizes: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class BatchStatisticsNorm2d(nn.Module):
    """Batch norm with the statistics of the batch at hand (as MAML uses it), written out.

    y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and (biased) var over (N, H, W).
    Written with elementary ops because torch 2.13's ``torch.func`` second-order gradient
    through ``F.batch_norm`` disagrees with finite differences (plain autograd agrees).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        scale = self.weight.view(1, -1, 1, 1) / torch.sqrt(var + self.eps)
        return (x - mean) * scale + self.bias.view(1, -1, 1, 1)


class Conv4(nn.Module):
    """Conv-4 of MAML: four [3x3 conv, batch norm, ReLU, 2x2 max-pool] blocks and a linear head.

    Batch norm normalises with the statistics of the batch at hand (no running statistics,
    as in MAML), which keeps the model a pure function of its parameters for ``torch.func``.
    """

    def __init__(self, in_channels: int, num_classes: int, filters: int = 64, image_size: int = 28) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(4):
            blocks += [
                nn.Conv2d(channels, filters, 3, padding=1),
                BatchStatisticsNorm2d(filters),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=image_size < 32),
            ]
            channels = filters
        self.features = nn.Sequential(*blocks)
        with torch.no_grad():
            flat = self.features(torch.zeros(2, in_channels, image_size, image_size)).flatten(1).shape[1]
        self.head = nn.Linear(flat, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


def initial_parameters(model: nn.Module, seed: int) -> Params:
    """The model's parameters re-initialised from ``seed`` (every agent starts from these).

    Drawn on a CPU copy with the CPU generator, so every device starts from the same
    numbers; returned on the model's device. The model itself is not changed.
    """
    device = next(model.parameters()).device
    fresh = copy.deepcopy(model).to("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):  # the model itself too (a one-layer nn.Linear)
                module.reset_parameters()
    return {name: p.detach().to(device) for name, p in fresh.named_parameters()}
