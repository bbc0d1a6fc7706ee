import math

import torch

from waveletflow.metrics import bits_per_dim, level_bits_per_dim


def test_bits_per_dim_formula():
    # a uniform density over [0,1)^D is one bin in 2^n per dimension: exactly n bits
    assert abs(float(bits_per_dim(torch.tensor(0.0), 784, 8)) - 8.0) < 1e-12
    lp = torch.tensor([-100.0, 50.0], dtype=torch.float64)
    expected = (-lp + 784 * 8 * math.log(2)) / (784 * math.log(2))
    assert torch.allclose(bits_per_dim(lp, 784, 8), expected)


def test_level_contributions_sum_to_total():
    lp = torch.randn(5, 4, dtype=torch.float64) * 100
    dims = [1, 3, 12, 48]
    contrib = level_bits_per_dim(lp, dims, 5)
    assert torch.allclose(contrib.sum(dim=1), bits_per_dim(lp.sum(dim=1), 64, 5), atol=1e-12)
