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


class FanAvgConv2d(nn.Conv2d):
    """3x3 'SAME' convolution with Keras' VarianceScaling(scale=1, mode='fan_avg', normal) kernel.

    W ~ N(0, sigma^2), sigma^2 = 1 / ((fan_in + fan_out) / 2), fan_in = in_ch * k * k,
    fan_out = out_ch * k * k (untruncated normal); bias 0. ``reset_parameters`` draws it
    (``nn.Conv2d.__init__`` calls it; so does :func:`initial_parameters`).
    """

    def reset_parameters(self) -> None:
        receptive = self.kernel_size[0] * self.kernel_size[1]
        fan_in, fan_out = self.in_channels * receptive, self.out_channels * receptive
        nn.init.normal_(self.weight, 0.0, (1.0 / ((fan_in + fan_out) / 2)) ** 0.5)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class GlorotLinear(nn.Linear):
    """Dense layer with Keras' defaults: Glorot-uniform kernel, W ~ U(-a, a) with
    a = sqrt(6 / (fan_in + fan_out)), and bias 0."""

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


MIN_IMAGE_SIZE = 16  # four 2x2 floor poolings: 16 -> 8 -> 4 -> 2 -> 1; 15 -> 7 -> 3 -> 1 -> 0


def conv4_feature_side(image_size: int) -> int:
    """Side of the last feature map: s_0 = image_size, s_{i+1} = floor(s_i / 2), four times
    (28 -> 14 -> 7 -> 3 -> 1; 84 -> 42 -> 21 -> 10 -> 5)."""
    side = image_size
    for _ in range(4):
        side //= 2
    return side


class Conv4(nn.Module):
    """Conv-4 of the Dif-MAML authors (their Classification/meta_learner.py, Keras), as in MAML.

    Four blocks, for i = 1..4 with C_0 = ``in_channels`` and C_i = F = ``filters``:

        h_i = maxpool_2x2(relu(bn(conv_3x3(h_{i-1}))))         (C_{i-1}, s, s) -> (F, floor(s/2), floor(s/2))

    conv_3x3: stride 1, padding 1 ('SAME'); bn: y = gamma (x - mean) / sqrt(var + eps) + beta
    with the statistics of the batch at hand (Keras ``training=True``: no running statistics,
    which keeps the model a pure function of its parameters for ``torch.func``); maxpool: 2x2,
    stride 2, no padding (Keras 'valid'), so sizes floor. Then

        logits = W flatten(h_4) + b,   W of shape (num_classes, F s_4^2)

    with s_4 = :func:`conv4_feature_side`: F features at 28x28 (s_4 = 1), 25 F at 84x84 (s_4 = 5).
    Parameters: per conv 9 C_{i-1} F + F, per bn 2F, head (F s_4^2 + 1) num_classes; Omniglot
    (F = 64, 1 channel, 28 px, 5-way) 640 + 128 + 3 (36928 + 128) + 325 = 112,261; MiniImageNet
    (F = 32, 3 channels, 84 px, 5-way) 896 + 64 + 3 (9248 + 64) + 4005 = 32,901.

    Initialisation (Keras'): conv kernels VarianceScaling(scale 1, fan_avg, normal)
    (:class:`FanAvgConv2d`), conv biases 0, gamma 1, beta 0, head Glorot-uniform with bias 0
    (:class:`GlorotLinear`). The authors' code passes scale = num_agents to the conv
    initialiser for the cooperative strategies (a quirk: a wider start the more agents);
    here the scale is 1 for every strategy, so all strategies start from the same model.

    ``image_size`` below 16 is refused (the features would be empty).
    """

    def __init__(self, in_channels: int, num_classes: int, filters: int = 64, image_size: int = 28) -> None:
        super().__init__()
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"image_size: {image_size} px below {MIN_IMAGE_SIZE}; Conv-4's four 2x2 poolings floor the "
                f"feature map to 0 pixels; allowed: image_size >= {MIN_IMAGE_SIZE}"
            )
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(4):
            blocks += [
                FanAvgConv2d(channels, filters, 3, padding=1),
                BatchStatisticsNorm2d(filters),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = filters
        self.features = nn.Sequential(*blocks)
        self.head = GlorotLinear(filters * conv4_feature_side(image_size) ** 2, num_classes)

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
