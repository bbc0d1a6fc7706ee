"""Sample quality: the Fréchet distance (FD) and kernel distance (KID) between two sets of images in the feature
space of a small classifier, trained once per dataset on its training split and cached (no Inception weights
are downloaded), with the classifier's mean confidence and the entropy of its predicted-class histogram on the
first set. The one implementation behind ``waveletflow quality``, the benchmarks and the tests.

FD and KID are torchmetrics' (``FrechetInceptionDistance`` and ``KernelInceptionDistance`` with this
feature extractor); they compare images with the same classifier only, so figures are comparable within a
dataset and a classifier, not with published FID values (which use Inception-v3 on ImageNet).
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from waveletflow.data import ImageDataset, to_tensor
from waveletflow.errors import UserInputError
from waveletflow.rundir import atomic_write

#: bump when the classifier or its training changes: cached classifiers of other versions are not reused
CLASSIFIER_VERSION = 1


class FeatureNet(nn.Module):
    """A small convolutional classifier; its 128 penultimate activations (after global average pooling) are the
    feature space of FD and KID. Takes float images (N, C, H, W) in [0, 1]."""

    num_features = 128  # read by torchmetrics

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.GroupNorm(4, 32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.GroupNorm(8, 128), nn.ReLU(),
            nn.Conv2d(128, self.num_features, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(self.num_features, classes)

    def forward(self, x: Tensor) -> Tensor:
        """The features (N, 128)."""
        return self.body(x - 0.5)

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self(x))


def to_unit(images: np.ndarray, n_bits: int) -> Tensor:
    """uint8 NHWC images of ``n_bits`` bits → float NCHW at the bin centres ``(k + ½) / 2^n_bits``."""
    return (to_tensor(images).float() + 0.5) / 2**n_bits


@dataclass
class Classifier:
    """A trained :class:`FeatureNet` with what it was trained on and its accuracy on the test split."""

    net: FeatureNet
    n_bits: int
    classes: int
    test_accuracy: float
    path: Path | None = None

    def features(self, images: np.ndarray, n_bits: int | None = None, batch: int = 512) -> Tensor:
        """(N, 128) features of uint8 NHWC images (of ``n_bits`` bits, default the training data's)."""
        bits = self.n_bits if n_bits is None else n_bits
        self.net.eval()
        with torch.no_grad():
            return torch.cat([self.net(to_unit(images[i : i + batch], bits)) for i in range(0, len(images), batch)])

    def probabilities(self, images: np.ndarray, n_bits: int | None = None, batch: int = 512) -> Tensor:
        bits = self.n_bits if n_bits is None else n_bits
        self.net.eval()
        with torch.no_grad():
            return torch.cat([torch.softmax(self.net.logits(to_unit(images[i : i + batch], bits)), 1)
                              for i in range(0, len(images), batch)])


def cache_dir() -> Path:
    """Where trained classifiers are kept: ``$WAVELETFLOW_CACHE`` or ``~/.cache/waveletflow``."""
    return Path(os.environ.get("WAVELETFLOW_CACHE", Path.home() / ".cache" / "waveletflow")) / "classifiers"


def train_classifier(data: ImageDataset, steps: int = 1500, batch_size: int = 128, seed: int = 0,
                     cache: bool = True, progress: bool = False) -> Classifier:
    """The feature classifier of ``data`` (trained on ``x_train``/``y_train`` with a fixed seed, or read from the
    cache where the same data, settings and version were trained before)."""
    if data.y_train is None or data.y_test is None:
        raise UserInputError(f"{data.name} has no class labels (an .npz needs y_train and y_test; an image folder "
                             "train/<class>/ and test/<class>/ subfolders): quality trains its feature classifier on them")
    classes = int(max(data.y_train.max(), data.y_test.max())) + 1
    if classes < 2 or data.y_train.min() < 0:
        raise UserInputError(f"{data.name}: the labels must be class numbers 0, 1, ... with at least two classes")
    c = data.image_shape[0]
    key = hashlib.sha256(f"{data.fingerprint()}|{CLASSIFIER_VERSION}|{steps}|{batch_size}|{seed}|{classes}".encode())
    path = cache_dir() / f"{key.hexdigest()[:20]}.pt"
    if cache and path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = FeatureNet(c, classes)
            net.load_state_dict(state["net"])
            return Classifier(net, int(state["n_bits"]), classes, float(state["test_accuracy"]), path)
        except Exception:  # a damaged cache entry is trained again
            pass
    torch.manual_seed(seed)
    net = FeatureNet(c, classes)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    y_train = torch.as_tensor(data.y_train)
    n = len(data.x_train)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="training the feature classifier", leave=False, disable=None)  # none off a terminal
    net.train()
    for _ in range(steps):
        idx = np.sort(torch.randint(0, n, (batch_size,), generator=gen).numpy())
        x = to_unit(data.x_train[idx], data.n_bits)
        loss = nn.functional.cross_entropy(net.logits(x), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    clf = Classifier(net, data.n_bits, classes, 0.0)
    pred = clf.probabilities(np.asarray(data.x_test[: len(data.x_test)])).argmax(1)
    clf.test_accuracy = float((pred == torch.as_tensor(data.y_test)).double().mean())
    if cache:
        state = {"net": net.state_dict(), "n_bits": data.n_bits, "test_accuracy": clf.test_accuracy}
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        clf.path = path
    return clf


@dataclass
class Quality:
    """Scores of a set of images against reference images: ``fd`` (Fréchet distance of the features), ``kid`` and
    ``kid_std`` (kernel distance: mean and spread over subsets), and on the scored images the classifier's mean
    top-class probability (``confidence``) and the entropy of its predicted-class histogram in bits
    (``class_entropy``; log2 of the classes when every class is as frequent). ``fd_inf`` is the Fréchet distance
    extrapolated to infinitely many scored images (:func:`fd_infinity`), free of FD's bias towards small sets."""

    fd: float
    kid: float
    kid_std: float
    confidence: float
    class_entropy: float
    images: int
    reference_images: int
    fd_inf: float | None = None

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _torchmetrics():
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError:
        raise UserInputError("the sample-quality metric needs torchmetrics: pip install 'waveletflow[quality]'") from None
    return FrechetInceptionDistance, KernelInceptionDistance


class _Features(nn.Module):
    """Hands torchmetrics precomputed features (it calls its extractor on what ``update`` gets)."""

    num_features = FeatureNet.num_features

    def forward(self, f: Tensor) -> Tensor:
        return f


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to feature sets ``a`` (N, F) and ``b`` (M, F):
    ``|μa − μb|² + tr(Σa + Σb − 2 (Σa Σb)^½)``, the trace of the root from the eigenvalues of ``Σa Σb``.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    >>> round(frechet_distance(x, x + torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64)), 6)
    25.0
    """
    a, b = a.double(), b.double()
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    root = torch.linalg.eigvals(ca @ cb).real.clamp(min=0).sqrt().sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + ca.trace() + cb.trace() - 2 * root)


def fd_infinity(fake: Tensor, real: Tensor, seed: int = 0, points: int = 6, draws: int = 3) -> float:
    """FD extrapolated to infinitely many ``fake`` features (Chong & Forsyth 2020): FD of random subsets of
    ``points`` sizes from a quarter of them to all (``draws`` subsets each, drawn with ``seed``) against all of
    ``real``, fitted as ``FD_N = FD_∞ + k/N`` by least squares. FD's bias shrinks as ``1/N``, so sets of
    different sizes compare fairly by ``FD_∞`` (the bias of the reference set stays: compare against one
    reference)."""
    n = len(fake)
    if n < 8:
        raise UserInputError("FD∞ needs at least 8 scored images")
    gen = torch.Generator().manual_seed(seed)
    sizes = sorted({max(4, round(n * f)) for f in np.linspace(0.25, 1.0, points)})
    xs, ys = [], []
    for size in sizes:
        for _ in range(1 if size == n else draws):
            idx = torch.randperm(n, generator=gen)[:size]
            xs.append(1.0 / size)
            ys.append(frechet_distance(fake[idx], real))
    slope, intercept = np.polyfit(np.asarray(xs), np.asarray(ys), 1)
    return float(intercept)


def quality(images: np.ndarray, reference: np.ndarray, classifier: Classifier, n_bits: int | None = None,
            reference_bits: int | None = None, kid_subsets: int = 50, kid_subset_size: int = 1000,
            seed: int = 0) -> Quality:
    """Scores of uint8 NHWC ``images`` (``n_bits`` bits) against ``reference`` images (``reference_bits``; both
    default to the classifier's data). KID is the mean over ``kid_subsets`` random subsets of at most
    ``kid_subset_size`` images of each side, and never more than half of the smaller side, so that the subsets
    differ and ``kid_std`` measures their spread; they are drawn from a generator seeded with ``seed``, as are the
    subsets of :func:`fd_infinity` (``fd_inf``, with 8 images or more)."""
    if len(images) < 2 or len(reference) < 2:
        raise UserInputError("the quality metric needs at least 2 images on each side")
    fid_cls, kid_cls = _torchmetrics()
    fake = classifier.features(images, n_bits).double()
    real = classifier.features(reference, reference_bits).double()
    fid = fid_cls(feature=_Features(), normalize=False)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    fd = float(fid.compute())
    size = max(2, min(kid_subset_size, len(fake) // 2, len(real) // 2))
    with warnings.catch_warnings():  # its note that it keeps every feature: here they are ours, and few
        warnings.simplefilter("ignore", UserWarning)
        kid = kid_cls(feature=_Features(), subsets=kid_subsets, subset_size=size, normalize=False)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = (float(v) for v in kid.compute())
    probs = classifier.probabilities(images, n_bits).double()
    hist = torch.bincount(probs.argmax(1), minlength=classifier.classes).double() / len(images)
    entropy = max(0.0, float(-(hist[hist > 0] * hist[hist > 0].log2()).sum()))  # not -0.0 for one class
    fd_inf = fd_infinity(fake, real, seed) if len(fake) >= 8 else None
    return _check_finite(Quality(max(fd, 0.0), kid_mean, kid_std, float(probs.max(1).values.mean()), entropy,
                                 len(images), len(reference), fd_inf))


def degraded(images: np.ndarray, n_bits: int, kind: str, seed: int = 0) -> np.ndarray:
    """Reference degradations of uint8 NHWC images for sanity checks: ``noise`` (uniform pixels), ``blur`` (a 3×3
    box blur), ``blocky`` (the 2×2 block means repeated: a low-pass without new detail)."""
    x = images.astype(np.float64)
    if kind == "noise":
        return np.random.default_rng(seed).integers(0, 2**n_bits, images.shape).astype(np.uint8)
    if kind == "blur":
        pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        h, w = images.shape[1:3]
        out = sum(pad[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9
    elif kind == "blocky":
        n, h, w, c = images.shape
        if h % 2 or w % 2:
            raise UserInputError(f"blocky copies need an even image size, got {h}×{w}")
        low = x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
        out = low.repeat(2, axis=1).repeat(2, axis=2)
    else:
        raise UserInputError(f"unknown degradation {kind!r}: noise, blur or blocky")
    return np.clip(np.rint(out), 0, 2**n_bits - 1).astype(np.uint8)


def classifier_summary(clf: Classifier) -> dict:
    return {"test_accuracy": round(clf.test_accuracy, 4), "classes": clf.classes,
            "cached": None if clf.path is None else str(clf.path)}


def _check_finite(q: Quality) -> Quality:
    if not all(math.isfinite(v) for v in (q.fd, q.kid, q.kid_std, q.confidence, q.class_entropy)):
        raise UserInputError("the quality metric came out non-finite (are the images all one value?)")
    return q
