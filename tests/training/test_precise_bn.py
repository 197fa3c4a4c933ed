"""Precise BN: BatchNorm statistics re-estimated as plain averages over a loader."""

from __future__ import annotations

import torch
from torch import nn

from covidct.training.loop import recalibrate_batchnorm


def test_running_stats_become_the_average_over_the_loader() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).eval()
    bn = model[1]
    bn.running_mean.fill_(100.0)  # stale statistics, as after a high-learning-rate epoch
    batches = [(torch.randn(4, 3, 8, 8) * 2 + 5, torch.zeros(4)) for _ in range(3)]
    recalibrate_batchnorm(model, [*batches, None], torch.device("cpu"))
    with torch.no_grad():
        features = [model[0](x) for x, _ in batches]
    expected = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training  # momentum and eval mode restored


def test_models_without_batchnorm_are_untouched() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.GroupNorm(1, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate_batchnorm(model, [(torch.randn(2, 3, 4, 4), torch.zeros(2))], torch.device("cpu"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
