import math

import numpy as np
import pytest
import torch

from waveletflow.wavelets import CONVENTIONS, haar, haar_pyramid, inverse_haar, inverse_haar_pyramid, pyramid_sizes


def explicit_logdet(fn, shape):
    """log|det| of a linear map, from its explicit matrix built column by column on basis images."""
    d = int(np.prod(shape))
    cols = [fn(torch.eye(d, dtype=torch.float64)[i].reshape(shape)).reshape(-1) for i in range(d)]
    return torch.linalg.slogdet(torch.stack(cols, dim=1))[1].item()


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_round_trip_float64(convention):
    x = torch.randn(3, 2, 6, 8, dtype=torch.float64)
    low, detail, _ = haar(x, convention)
    assert low.shape == (3, 2, 3, 4) and detail.shape == (3, 6, 3, 4)
    assert (inverse_haar(low, detail, convention) - x).abs().max() < 1e-12


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_logdet_equals_explicit_matrix(convention):
    shape = (1, 2, 4, 4)
    fn = lambda v: torch.cat([t.reshape(-1) for t in haar(v, convention)[:2]])  # noqa: E731
    _, _, logdet = haar(torch.randn(5, *shape[1:], dtype=torch.float64), convention)
    assert logdet.shape == (5,)
    assert abs(logdet[0].item() - explicit_logdet(fn, shape)) < 1e-10
    expected = {"orthonormal": 0.0, "average": 8 * math.log(0.5), "unimodular": 0.0}[convention]
    assert abs(logdet[0].item() - expected) < 1e-12


def test_orthonormal_matches_pywavelets():
    pywt = pytest.importorskip("pywt")
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    low, detail, _ = haar(x, "orthonormal")
    for n in range(2):
        for c in range(3):
            ca, (ch, cv, cd) = pywt.dwt2(x[n, c].numpy(), "haar")
            np.testing.assert_allclose(low[n, c].numpy(), ca, rtol=0, atol=1e-12)
            for k, ref in enumerate((ch, cv, cd)):
                np.testing.assert_allclose(detail[n, 3 * c + k].numpy(), ref, rtol=0, atol=1e-12)


def test_average_and_unimodular_relations():
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    lo_o, d_o, _ = haar(x, "orthonormal")
    lo_a, d_a, _ = haar(x, "average")
    lo_u, d_u, _ = haar(x, "unimodular")
    blocks = x.reshape(2, 1, 2, 2, 2, 2).mean(dim=(3, 5))
    assert torch.allclose(lo_a, blocks, atol=1e-15) and torch.allclose(lo_u, blocks, atol=1e-15)
    assert torch.allclose(d_a, d_o, atol=0)
    assert torch.allclose(d_u, d_o * 2 / 2 ** (2 / 3), atol=1e-14)
    assert torch.allclose(lo_o, 2 * lo_a, atol=1e-15)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("size,base,n_details", [(28, 7, 2), (32, 1, 5), (32, 4, 3)])
def test_pyramid_round_trip_and_logdet(convention, size, base, n_details):
    x = torch.rand(2, 1, size, size, dtype=torch.float64)
    pyr = haar_pyramid(x, base, convention)
    assert pyr.base.shape == (2, 1, base, base)
    assert len(pyr.details) == n_details
    assert [d.shape[-1] for d in pyr.details] == [base * 2**i for i in range(n_details)]  # coarse to fine
    assert (inverse_haar_pyramid(pyr.base, pyr.details, convention) - x).abs().max() < 1e-12
    if size == 28 or base == 4:  # explicit matrices of 784×784 and 1024×1024 are cheap enough
        fn = lambda v: torch.cat([t.reshape(-1) for t in (haar_pyramid(v, base, convention).base, *haar_pyramid(v, base, convention).details)])  # noqa: E731
        assert abs(pyr.logdet[0].item() - explicit_logdet(fn, (1, 1, size, size))) < 1e-8
    per_low = {"orthonormal": 0.0, "average": math.log(0.5), "unimodular": 0.0}[convention]
    n_low = sum((size // 2**k) ** 2 for k in range(1, n_details + 1))
    assert abs(pyr.logdet[0].item() - n_low * per_low) < 1e-9


def test_no_in_place_float32_and_autograd():
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    before = x.detach().clone()
    low, detail, logdet = haar(x)
    assert low.dtype == torch.float32 and logdet.dtype == torch.float32
    (low.sum() + detail.pow(2).sum()).backward()
    assert torch.equal(x.detach(), before) and x.grad is not None
    xd = torch.rand(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: haar(v, "unimodular")[1], (xd,))
    y = inverse_haar(low.detach(), detail.detach())
    assert (y - before).abs().max() < 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_round_trip():
    x = torch.rand(2, 3, 8, 8, device="cuda")
    pyr = haar_pyramid(x, 1)
    assert (inverse_haar_pyramid(pyr.base, pyr.details) - x).abs().max() < 1e-5


@pytest.mark.parametrize(
    "call",
    [
        lambda: haar(torch.rand(1, 1, 5, 4)),
        lambda: haar(torch.rand(1, 4, 4)),
        lambda: haar(torch.rand(1, 1, 4, 4), "db2"),
        lambda: haar_pyramid(torch.rand(1, 1, 28, 28), 4),
        lambda: haar_pyramid(torch.rand(1, 1, 28, 28), 8),
        lambda: pyramid_sizes(30, 4),
        lambda: inverse_haar(torch.rand(1, 1, 2, 2), torch.rand(1, 2, 2, 2)),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
