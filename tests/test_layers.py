"""Every invertible layer and composed flow goes through the same checks: add a new one to FLOWS."""

import pytest
import torch

from flow_checks import flat_jacobian_logdet, randomize
from waveletflow.flows import FlowStep, MultiScaleGlow, data_dependent_init, flow_stack
from waveletflow.layers import ActNorm, AffineCoupling, InvConv1x1, SplitPrior, Squeeze

# name → (factory, input shape (C, H, W), conditioning channels)
FLOWS = {
    "actnorm": (lambda: ActNorm(4), (4, 3, 3), 0),
    "conv1x1-lu": (lambda: InvConv1x1(4, lu=True), (4, 3, 3), 0),
    "conv1x1-plain": (lambda: InvConv1x1(4, lu=False), (4, 3, 3), 0),
    "coupling-affine": (lambda: AffineCoupling(4, 0, 8, 2, "affine"), (4, 3, 3), 0),
    "coupling-glow": (lambda: AffineCoupling(4, 0, 8, 1, "glow"), (4, 3, 3), 0),
    "coupling-additive": (lambda: AffineCoupling(4, 0, 8, 1, "additive"), (4, 3, 3), 0),
    "coupling-odd-parity": (lambda: AffineCoupling(3, 0, 8, 1, "affine", parity=1), (3, 3, 3), 0),
    "coupling-checkerboard": (lambda: AffineCoupling(1, 0, 8, 1, "affine", mask="checkerboard"), (1, 4, 3), 0),
    "coupling-cond-affine": (lambda: AffineCoupling(3, 2, 8, 1, "affine"), (3, 3, 3), 2),
    "coupling-cond-glow": (lambda: AffineCoupling(3, 1, 8, 1, "glow", parity=1), (3, 3, 3), 1),
    "coupling-cond-checkerboard": (lambda: AffineCoupling(1, 1, 8, 1, "affine", mask="checkerboard", parity=1), (1, 3, 3), 1),
    "squeeze": (lambda: Squeeze(2), (2, 4, 2), 0),
    "split-prior": (lambda: SplitPrior(4), (4, 3, 3), 0),
    "flow-step": (lambda: FlowStep(4, 0, 8, 1), (4, 3, 3), 0),
    "flow-stack-cond": (lambda: flow_stack(3, 3, cond_channels=1, width=8), (3, 3, 3), 1),
    "flow-stack-1ch": (lambda: flow_stack(1, 3, width=8), (1, 3, 3), 0),
    "glow-multiscale": (lambda: MultiScaleGlow((1, 4, 4), n_levels=2, n_steps=2, width=8), (1, 4, 4), 0),
    "glow-multiscale-rgb": (lambda: MultiScaleGlow((3, 4, 4), n_levels=2, n_steps=1, width=8, coupling="glow", lu=False), (3, 4, 4), 0),
}


def make(name, dtype):
    factory, shape, cond_ch = FLOWS[name]
    torch.manual_seed(0)
    flow = factory().to(dtype)
    randomize(flow)
    flow.eval()
    x = torch.randn(3, *shape, dtype=dtype)
    cond = torch.randn(3, cond_ch, *shape[1:], dtype=dtype) if cond_ch else None
    return flow, x, cond


@pytest.mark.parametrize("name", FLOWS)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_round_trip(name, dtype, tol):
    flow, x, cond = make(name, dtype)
    y, logdet = flow(x, cond)
    assert logdet.shape == (3,)
    assert (flow.inverse(y, cond) - x).abs().max() < tol
    if y.shape == x.shape and name != "squeeze":  # the parameters make a non-trivial map
        assert (y - x).abs().max() > 1e-3


@pytest.mark.parametrize("name", FLOWS)
def test_logdet_matches_autograd_jacobian(name):
    flow, x, cond = make(name, torch.float64)
    x1 = x[:1]
    c1 = cond[:1] if cond is not None else None
    _, logdet = flow(x1, c1)
    expected = flat_jacobian_logdet(lambda v: flow(v, c1)[0], x1)
    assert abs(logdet.item() - expected.item()) < 1e-6


@pytest.mark.parametrize("name", [n for n, (_, _, c) in FLOWS.items() if c])
def test_conditioning_changes_output(name):
    flow, x, cond = make(name, torch.float64)
    y1, _ = flow(x, cond)
    y2, _ = flow(x, cond + 1.0)
    assert (y1 - y2).abs().max() > 1e-3


def test_actnorm_data_dependent_init():
    norm = ActNorm(3)
    x = torch.randn(64, 3, 5, 5) * torch.tensor([0.1, 2.0, 5.0]).view(1, 3, 1, 1) + torch.tensor([1.0, -3.0, 0.5]).view(1, 3, 1, 1)
    y, _ = norm(x)  # first forward in training mode initialises
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    y2, _ = norm(x * 2)  # later batches do not re-initialise
    assert not torch.allclose(y2.std(dim=(0, 2, 3)), torch.ones(3), atol=0.1)
    # explicit initialisation of a whole flow, layer by layer, on a chosen batch
    stack = flow_stack(3, 2, width=8)
    data_dependent_init(stack, x)
    out, _ = stack.layers[0].layers[0](x)  # the first ActNorm of the first step
    assert torch.allclose(out.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_new_flow_is_identity_on_couplings():
    c = AffineCoupling(4, 2, 8, 2, "affine")
    x = torch.randn(2, 4, 3, 3)
    y, ld = c(x, torch.randn(2, 2, 3, 3))
    assert torch.equal(y, x) and torch.equal(ld, torch.zeros(2))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="expects"):
        ActNorm(3)(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="conditioning"):
        AffineCoupling(4, 2)(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="channel"):
        AffineCoupling(1, 0, mask="channel")
    with pytest.raises(ValueError, match="levels"):
        MultiScaleGlow((1, 28, 28), n_levels=3)
