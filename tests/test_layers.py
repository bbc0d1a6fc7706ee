"""Every invertible layer and composed flow goes through the same checks: add a new one to FLOWS."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import NamedTuple

import pytest
import torch

from flow_checks import flat_jacobian_logdet, randomize
from waveletflow.errors import UserInputError
from waveletflow.flows import FlowStep, MultiScaleGlow, cnf_stack, data_dependent_init, flow_stack
from waveletflow.layers import (
    CNF,
    ActNorm,
    AffineCoupling,
    EncodedCondition,
    HaarStep,
    InvConv1x1,
    InvertibleLayer,
    LogitTransform,
    Sequential,
    SolverConfig,
    SplitPrior,
    Squeeze,
)

TIGHT = SolverConfig("dopri5", 1e-9, 1e-9)


def tight_cnf(cond_channels: int = 0) -> CNF:
    return CNF(2, cond_channels, hidden=(8,), divergence="exact", train_solver=TIGHT, eval_solver=TIGHT)


class Case(NamedTuple):
    factory: Callable[[], InvertibleLayer]
    shape: tuple[int, int, int]  # input (C, H, W)
    cond: int = 0  # conditioning channels
    unit: bool = False  # inputs in (0, 1)
    ode: bool = False  # solved to 1e-9: checked in float64 only, round trip to 1e-7


FLOWS = {
    "actnorm": Case(lambda: ActNorm(4), (4, 3, 3)),
    "conv1x1-lu": Case(lambda: InvConv1x1(4, lu=True), (4, 3, 3)),
    "conv1x1-plain": Case(lambda: InvConv1x1(4, lu=False), (4, 3, 3)),
    "coupling-affine": Case(lambda: AffineCoupling(4, 0, 8, 2, "affine"), (4, 3, 3)),
    "coupling-glow": Case(lambda: AffineCoupling(4, 0, 8, 1, "glow"), (4, 3, 3)),
    "coupling-additive": Case(lambda: AffineCoupling(4, 0, 8, 1, "additive"), (4, 3, 3)),
    "coupling-odd-parity": Case(lambda: AffineCoupling(3, 0, 8, 1, "affine", parity=1), (3, 3, 3)),
    "coupling-checkerboard": Case(lambda: AffineCoupling(1, 0, 8, 1, "affine", mask="checkerboard"), (1, 4, 3)),
    "coupling-cond-affine": Case(lambda: AffineCoupling(3, 2, 8, 1, "affine"), (3, 3, 3), 2),
    "coupling-cond-glow": Case(lambda: AffineCoupling(3, 1, 8, 1, "glow", parity=1), (3, 3, 3), 1),
    "coupling-published-glow": Case(lambda: AffineCoupling(4, 0, 8, 0, "glow", net="glow"), (4, 3, 3)),
    "coupling-cond-published-glow": Case(lambda: AffineCoupling(3, 2, 8, 0, "glow", parity=1, net="glow"), (3, 3, 3), 2),
    "coupling-cond-checkerboard": Case(
        lambda: AffineCoupling(1, 1, 8, 1, "affine", mask="checkerboard", parity=1), (1, 3, 3), 1
    ),
    "squeeze": Case(lambda: Squeeze(2), (2, 4, 2)),
    "split-prior": Case(lambda: SplitPrior(4), (4, 3, 3)),
    "encoded-condition": Case(lambda: EncodedCondition(flow_stack(3, 2, cond_channels=5, width=8), 1, 4, 2),
                              (3, 3, 3), 1),
    "logit": Case(lambda: LogitTransform(2, 0.05), (2, 3, 2), unit=True),
    "haar-orthonormal": Case(lambda: HaarStep(2, "orthonormal"), (2, 4, 2)),
    "haar-average": Case(lambda: HaarStep(2, "average"), (2, 4, 2)),
    "haar-unimodular": Case(lambda: HaarStep(1, "unimodular"), (1, 2, 4)),
    "cnf": Case(tight_cnf, (2, 2, 2), ode=True),
    "cnf-cond": Case(lambda: tight_cnf(1), (2, 2, 2), 1, ode=True),
    "cnf-stack": Case(lambda: cnf_stack(2, 0, 1, True, 0.05, hidden=(8,), divergence="exact",
                                        train_solver=TIGHT, eval_solver=TIGHT), (2, 2, 2), unit=True, ode=True),
    "flow-step": Case(lambda: FlowStep(4, 0, 8, 1), (4, 3, 3)),
    "flow-stack-cond": Case(lambda: flow_stack(3, 3, cond_channels=1, width=8), (3, 3, 3), 1),
    "flow-stack-1ch": Case(lambda: flow_stack(1, 3, width=8), (1, 3, 3)),
    "glow-multiscale": Case(lambda: MultiScaleGlow((1, 4, 4), n_scales=2, n_steps=2, width=8), (1, 4, 4)),
    "glow-multiscale-rgb": Case(
        lambda: MultiScaleGlow((3, 4, 4), n_scales=2, n_steps=1, width=8, coupling="glow", lu=False), (3, 4, 4)
    ),
    "glow-multiscale-published": Case(
        lambda: MultiScaleGlow((1, 4, 4), n_scales=2, n_steps=2, width=8, coupling="glow", net="glow"), (1, 4, 4)
    ),
}
ROUND_TRIPS = [
    pytest.param(name, dtype, 1e-7 if case.ode else tol, id=f"{name}-{str(dtype)[6:]}")
    for name, case in FLOWS.items()
    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-9))
    if dtype == torch.float64 or not case.ode
]


def make(name, dtype):
    case = FLOWS[name]
    torch.manual_seed(0)
    flow = case.factory().to(dtype)
    randomize(flow)
    flow.eval()
    x = torch.randn(3, *case.shape, dtype=dtype)
    if case.unit:
        x = torch.rand(3, *case.shape, dtype=dtype) * 0.9 + 0.05
    cond = torch.randn(3, case.cond, *case.shape[1:], dtype=dtype) if case.cond else None
    return flow, x, cond


@pytest.mark.parametrize("name,dtype,tol", ROUND_TRIPS)
def test_round_trip(name, dtype, tol):
    flow, x, cond = make(name, dtype)
    y, logdet = flow(x, cond)
    assert logdet.shape == (3,)
    x_back, _ = flow.inverse(y, cond)
    assert (x_back - x).abs().max() < tol
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


@pytest.mark.parametrize("name", FLOWS)
def test_forward_and_inverse_logdets_cancel(name):
    flow, x, cond = make(name, torch.float64)
    y, forward_logdet = flow(x, cond)
    _, inverse_logdet = flow.inverse(y, cond)
    assert inverse_logdet.shape == (3,)
    assert (forward_logdet + inverse_logdet).abs().max() < 1e-8


def _fits(actual: torch.Size, shape: tuple) -> bool:
    return len(actual) == len(shape) and all(s is None or s == a for a, s in zip(actual, shape))


@pytest.mark.parametrize("name", FLOWS)
def test_declared_shapes_match_the_real_ones(name):
    flow, x, cond = make(name, torch.float64)
    y, _ = flow(x, cond)
    assert _fits(x.shape[1:], flow.in_shape), (flow.in_shape, x.shape)
    assert _fits(y.shape[1:], flow.out_shape), (flow.out_shape, y.shape)
    assert flow.num_channels == x.shape[1] and flow.cond_channels == FLOWS[name].cond


@pytest.mark.parametrize("name", [n for n, case in FLOWS.items() if case.cond])
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
    with pytest.raises(ValueError, match="scales"):
        MultiScaleGlow((1, 28, 28), n_scales=3)
    with pytest.raises(ValueError, match="expects"):
        MultiScaleGlow((1, 4, 4), n_scales=1, n_steps=1, width=4).inverse(torch.randn(2, 15))
    with pytest.raises(ValueError, match="convention"):
        HaarStep(1, "bogus")


def test_sequential_refuses_mismatched_layers():
    with pytest.raises(ValueError, match="layer 0 \\(ActNorm\\).*layer 1 \\(ActNorm\\).*channels"):
        Sequential([ActNorm(4), ActNorm(3)])
    with pytest.raises(ValueError, match="shape"):
        Sequential([MultiScaleGlow((1, 4, 4), n_scales=1, n_steps=1, width=4), ActNorm(16)])
    with pytest.raises(ValueError, match="channels"):
        Sequential([Squeeze(2), ActNorm(2)])
    with pytest.raises(ValueError, match="conditioning"):
        Sequential([AffineCoupling(4, 1, 8), AffineCoupling(4, 2, 8)])
    seq = Sequential([Squeeze(2), ActNorm(8), AffineCoupling(8, 1, 8)])
    assert (seq.in_shape, seq.out_shape, seq.cond_channels) == ((2, None, None), (8, None, None), 1)


def test_solver_config_validates_and_is_frozen():
    with pytest.raises(ValueError, match="unknown ODE solver"):
        SolverConfig("rk45", 1e-3, 1e-3)
    with pytest.raises(ValueError, match="tolerance must be positive"):
        SolverConfig("dopri5", -1.0, 1e-3)
    with pytest.raises(FrozenInstanceError):
        TIGHT.atol = 1.0  # type: ignore[misc]


def test_sequential_adds_up_ode_statistics_with_the_given_solver():
    pytest.importorskip("torchdiffeq")
    torch.manual_seed(0)
    stack = cnf_stack(2, 1, 2, True, 0.05, hidden=(8,), divergence="exact").double()
    randomize(stack, scale=0.3)
    assert [type(layer).__name__ for layer in stack.layers] == ["LogitTransform", "ActNorm", "CNF", "ActNorm", "CNF"]
    x = torch.rand(2, 2, 3, 3, dtype=torch.float64) * 0.9 + 0.05
    cond = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    euler = SolverConfig("euler", 1e-3, 1e-3)
    out = stack.eval().transform(x, cond, euler)
    assert out.nfe == 2 and out.kinetic is None  # one Euler step over [0, 1] per CNF; no penalties in evaluation
    z_eval = out.z
    out = stack.train().transform(x, cond, euler)  # training: the penalties are integrated and add up
    assert torch.allclose(out.z, z_eval)
    v, kinetic = x, 0
    for layer in stack.layers:
        part = layer.transform(v, cond, euler)
        v, kinetic = part.z, kinetic + (part.kinetic if part.kinetic is not None else 0)
    assert torch.allclose(out.z, v) and torch.allclose(out.kinetic, kinetic) and float(out.kinetic.detach().min()) > 0
    back = stack.inverse_transform(out.z, cond, euler)
    assert back.nfe == 2 and back.kinetic is None and back.jacobian is None
    assert stack.eval().transform(x, cond).nfe > 2  # None: the eval solver (adaptive dopri5)
    assert ActNorm(2).transform(x).nfe == 0


def test_adjoint_gradients_match_backpropagation_through_the_solver():
    pytest.importorskip("torchdiffeq")
    solver = SolverConfig("dopri5", 1e-8, 1e-8)
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(0)
        cnf = CNF(2, 1, hidden=(8,), train_solver=solver, adjoint=adjoint).double()
        randomize(cnf, scale=0.3)
        x = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
        cond = torch.randn(2, 1, 2, 2, dtype=torch.float64)
        out = cnf.train().transform(x, cond)
        loss = out.z.pow(2).sum() + out.logdet.sum() + out.kinetic.sum() + out.jacobian.sum()
        grads.append(torch.autograd.grad(loss, [x, *cnf.parameters()]))
    for direct, adjoint in zip(*grads):
        assert torch.allclose(direct, adjoint, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FLOWS)
def test_inverse_without_jacobian_gives_the_same_point(name):
    flow, x, cond = make(name, torch.float64)
    y, _ = flow(x, cond)
    full = flow.inverse_transform(y, cond)
    fast = flow.inverse_transform(y, cond, jac=False)
    assert fast.logdet is None and fast.nfe <= full.nfe
    assert (fast.z - full.z).abs().max() < 1e-7


def test_published_glow_coupling_network():
    """Glow's network: 3×3 conv → ActNorm → ReLU → 1×1 conv → ActNorm → ReLU → zero 3×3 conv, no conv biases."""
    from waveletflow.layers import GlowCouplingNet

    c = AffineCoupling(4, 0, 16, 0, "glow", net="glow")
    assert isinstance(c.net, GlowCouplingNet)
    convs = [m for m in c.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.kernel_size for m in convs] == [(3, 3), (1, 1), (3, 3)]
    assert convs[0].bias is None and convs[1].bias is None
    x = torch.randn(8, 4, 5, 5) * 3 + 1
    y, logdet = c(x)  # the new network outputs zeros: y2 = x2·sigmoid(2); its ActNorms initialise from this batch
    assert torch.equal(c.net(x[:, :2]), torch.zeros(8, 4, 5, 5))
    assert torch.equal(y[:, :2], x[:, :2]) and torch.allclose(y[:, 2:], x[:, 2:] * torch.sigmoid(torch.tensor(2.0)))
    assert torch.allclose(logdet, torch.full((8,), 2 * 25 * math.log(torch.sigmoid(torch.tensor(2.0)))))
    h = c.net.norm1(c.net.conv1(x[:, :2]))[0].detach()
    assert abs(float(h.mean())) < 1e-5 and abs(float(h.std(unbiased=False)) - 1) < 1e-3
    with pytest.raises(ValueError, match="coupling network"):
        AffineCoupling(4, net="resnet")


def test_encoded_condition_reaches_further_than_the_couplings_alone():
    """With the conditioning network, the output at a pixel depends on the conditioning image 3 pixels away
    (the encoder's dilated context); without it, a one-step flow's coupling reaches 2 pixels (two 3×3 convs)."""
    torch.manual_seed(0)
    plain = flow_stack(3, 1, cond_channels=1, width=8)
    encoded = EncodedCondition(flow_stack(3, 1, cond_channels=5, width=8), 1, 4, 2)
    for flow in (plain, encoded):
        randomize(flow)
    x = torch.randn(1, 3, 9, 9)
    cond = torch.randn(1, 1, 9, 9, requires_grad=True)

    def reach(flow):
        cond.grad = None
        flow(x, cond)[0][0, :, 4, 4].sum().backward()
        return cond.grad[0, 0, 4, 4 + 3].abs().item()

    assert reach(plain) == 0.0 and reach(encoded) > 0.0
    with pytest.raises(UserInputError, match="expected 1 \\+ 4"):
        EncodedCondition(flow_stack(3, 1, cond_channels=1, width=8), 1, 4, 2)
