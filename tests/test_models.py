"""The Dif-MAML authors' Conv-4: layer sizes, parameter counts, Keras initialisation, seeding."""

import math

import pytest
import torch

from flower_difmaml.models import MLP, Conv4, conv4_feature_side, initial_parameters


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_omniglot_and_miniimagenet() -> None:
    # conv 9 C_in F + F, bn 2F, head (F s^2 + 1) n-way
    omniglot = Conv4(1, 5, filters=64, image_size=28)
    assert _count(omniglot) == 640 + 128 + 3 * (36928 + 128) + 325 == 112_261
    mini = Conv4(3, 5, filters=32, image_size=84)
    assert _count(mini) == 896 + 64 + 3 * (9248 + 64) + 4005 == 32_901


@pytest.mark.parametrize(("size", "side"), [(28, 1), (84, 5), (16, 1), (32, 2)])
def test_pooling_floors_feature_sizes(size: int, side: int) -> None:
    assert conv4_feature_side(size) == side
    model = Conv4(1, 5, filters=8, image_size=size)
    features = model.features(torch.zeros(2, 1, size, size))
    assert features.shape == (2, 8, side, side)  # 28 -> 14 -> 7 -> 3 -> 1; 84 -> 42 -> 21 -> 10 -> 5
    assert model.head.in_features == 8 * side * side
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 5)


def test_images_below_16_pixels_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^image_size: 15 px below 16"):
        Conv4(1, 5, image_size=15)


def test_keras_initialisation_std_per_layer() -> None:
    model = Conv4(1, 5, filters=64, image_size=28)
    params = initial_parameters(model, 0)
    convs = [name for name in params if name.endswith(".weight") and params[name].ndim == 4]
    assert len(convs) == 4
    for name in convs:
        weight = params[name]
        fan_in, fan_out = weight.shape[1] * 9, weight.shape[0] * 9
        expected = math.sqrt(1.0 / ((fan_in + fan_out) / 2))  # VarianceScaling(1, fan_avg, normal)
        tolerance = 4 / math.sqrt(2 * weight.numel())  # 4 standard errors of a sample std
        assert abs(float(weight.std()) / expected - 1) < tolerance, name
        assert abs(float(weight.mean())) < 0.1 * expected
    # untruncated (Keras' 'untruncated_normal'): |w| > 2 sigma about 4.6 % of the time, not 0
    big = (params["features.4.weight"].abs() > 2 * math.sqrt(2 / (9 * 64 * 2))).float().mean()
    assert 0.035 < float(big) < 0.06
    head = params["head.weight"]  # Glorot uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    limit = math.sqrt(6.0 / (64 + 5))
    assert float(head.abs().max()) <= limit and float(head.abs().max()) > 0.9 * limit
    assert abs(float(head.std()) / (limit / math.sqrt(3)) - 1) < 0.1
    for name, p in params.items():
        if name.endswith(".bias"):
            assert torch.count_nonzero(p) == 0, name  # conv, bn (beta) and head biases
    bn_gammas = [name for name in params if params[name].ndim == 1 and not name.endswith(".bias")]
    assert len(bn_gammas) == 4 and all(torch.all(params[n] == 1) for n in bn_gammas)


def test_same_seed_same_parameters_other_seed_other() -> None:
    for model in (Conv4(1, 5, filters=8, image_size=28), MLP((1, 40, 40, 1))):
        a, b, c = initial_parameters(model, 3), initial_parameters(model, 3), initial_parameters(model, 4)
        assert all(torch.equal(a[n], b[n]) for n in a)
        assert not all(torch.equal(a[n], c[n]) for n in a)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        initial_parameters(model, 5)  # the model itself is not changed
        assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_mlp_keeps_pytorch_default_initialisation() -> None:
    params = initial_parameters(MLP((1, 40, 1)), 0)
    bound = 1 / math.sqrt(40)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    assert float(params["2.weight"].abs().max()) <= bound and torch.count_nonzero(params["2.bias"]) == 1
