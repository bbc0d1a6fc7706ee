"""The sample-quality metric: it must rank real images far above degraded ones, be repeatable, cache its
classifier, read labels from every kind of dataset that has them, and refuse data without labels in one line."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_WF
from waveletflow.cli import main
from waveletflow.data import load_dataset
from waveletflow.errors import UserInputError

pytest.importorskip("torchmetrics")

from waveletflow.quality import degraded, quality, train_classifier  # noqa: E402

STEPS = 400  # enough for the 8×8 digits (the default trains longer)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WAVELETFLOW_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_metric_ranks_real_images_above_degraded_ones(digits):
    clf = train_classifier(digits, steps=STEPS)
    assert clf.test_accuracy > 0.85  # a classifier worth its features
    test, train = digits.x_test, digits.x_train
    real = quality(train, test, clf, kid_subset_size=200)
    scores = {kind: quality(degraded(train, 5, kind), test, clf, kid_subset_size=200)
              for kind in ("noise", "blur", "blocky")}
    for kind, q in scores.items():
        assert q.fd > 3 * real.fd, (kind, q.fd, real.fd)
        assert q.kid > real.kid + 3 * q.kid_std, (kind, q.kid, real.kid)
    assert real.fd < 0.05 * scores["noise"].fd  # FD(train, test) is small next to FD(noise, test)
    # real digits are classified with confidence and cover the ten classes; noise does not
    assert real.confidence > 0.8 and real.class_entropy > 3.0  # log2(10) = 3.32
    assert scores["noise"].class_entropy < real.class_entropy


def test_metric_is_deterministic_and_the_classifier_is_cached(digits):
    a = train_classifier(digits, steps=STEPS)
    assert a.path is not None and a.path.is_file()
    b = train_classifier(digits, steps=STEPS)  # read back from the cache
    assert b.test_accuracy == a.test_accuracy
    imgs = degraded(digits.x_train[:300], 5, "blur")
    qa = quality(imgs, digits.x_test, a, kid_subset_size=100, seed=3)
    qb = quality(imgs, digits.x_test, b, kid_subset_size=100, seed=3)
    assert qa == qb
    qc = quality(imgs, digits.x_test, b, kid_subset_size=100, seed=4)
    assert qc.fd == qa.fd and qc.kid != qa.kid  # KID's subsets follow the seed, FD has none


def test_kid_subsets_differ_so_its_spread_is_measured(digits):
    """With as many images as the default subset size or fewer, KID's subsets are half of them, so that they
    differ and its spread is not zero (subsets of all the images would all be the same)."""
    clf = train_classifier(digits, steps=STEPS)
    imgs = degraded(digits.x_train[:120], 5, "blur")
    q = quality(imgs, digits.x_test[:120], clf)  # default subset size 1000 > 120 images
    assert q.kid_std > 0
    same = quality(imgs, digits.x_test[:120], clf, kid_subset_size=60)
    assert (q.kid, q.kid_std) == (same.kid, same.kid_std)  # half of the 120, as asked for explicitly


def test_labels_from_npz_and_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "l.npz", x_train=x[:15], x_test=x[15:], y_train=np.arange(15) % 3, y_test=np.arange(5) % 3)
    ds = load_dataset(str(tmp_path / "l.npz"))
    assert ds.y_train.tolist() == (np.arange(15) % 3).tolist() and ds.y_test.dtype == np.int64
    np.savez(tmp_path / "n.npz", x_train=x[:15], x_test=x[15:])
    with pytest.raises(UserInputError, match="has no class labels"):
        train_classifier(load_dataset(str(tmp_path / "n.npz")), steps=2)
    for split, count in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / "f" / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "f" / split / cls / f"{i}.png")
    ds = load_dataset(str(tmp_path / "f"))
    assert ds.y_train.tolist() == [0] * 4 + [1] * 4 and ds.info["classes"] == ["cat", "dog"]
    clf = train_classifier(ds, steps=3)
    assert clf.classes == 2


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("quality") / "run"
    cfg = run.parent / "tiny.json"
    cfg.write_text(json.dumps(TINY_WF))
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", "20", "--batch-size", "32",
                 "--config", str(cfg), "--quiet"]) == 0
    return run


def test_cli_quality_scores_samples_and_baselines(trained_run, capsys, tmp_path, monkeypatch):
    import waveletflow.quality as q

    monkeypatch.setattr(q, "train_classifier", lambda data, **kw: train_classifier(data, steps=STEPS))
    code = main(["quality", str(trained_run), "--data", "digits", "--n", "200", "--baselines", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["n"] == 200 and res["mcmc"] is None and res["classifier"]["test_accuracy"] > 0.85
    rows = res["scores"]
    assert set(rows) == {"samples", "training images", "blocky training images", "blur training images",
                         "noise training images"}
    assert rows["training images"]["fd"] < rows["noise training images"]["fd"]
    # a model trained for 20 steps is far from the data
    assert rows["samples"]["fd"] > rows["training images"]["fd"]
    code = main(["quality", str(trained_run), "--data", "digits", "--n", "16", "--temperature", "0.97", "--mcmc",
                 "--mcmc-steps", "2", "--mcmc-warmup", "1"])
    out, err = capsys.readouterr()
    assert code == 0 and "annealed (MCMC)" in out and err.count("acceptance") == 4
    np.savez(tmp_path / "n.npz", x_train=load_dataset("digits").x_train, x_test=load_dataset("digits").x_test)
    code = main(["quality", str(trained_run), "--data", str(tmp_path / "n.npz"), "--n", "16"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error:") and "has no class labels" in err and len(err.strip().splitlines()) == 1


def test_fd_infinity_removes_the_bias_of_a_small_set_of_samples():
    """Samples of the reference's own law: FD of 300 of them is far from 0 (its bias shrinks as 1/N), FD∞ close
    to it; for a shifted law FD∞ is much nearer the true distance than FD."""
    import torch

    from waveletflow.quality import fd_infinity, frechet_distance

    g = torch.Generator().manual_seed(0)
    real = torch.randn(6000, 32, generator=g, dtype=torch.float64)
    fake = torch.randn(300, 32, generator=g, dtype=torch.float64)
    fd = frechet_distance(fake, real)
    assert frechet_distance(fake[:100], real) > fd > 0.5  # the smaller the set, the larger the bias
    assert abs(fd_infinity(fake, real)) < 0.2 * fd
    shift = torch.zeros(32, dtype=torch.float64)
    shift[:4] = 1.0  # a true distance of 4; what is left is the samples' noise (2|δ|/√N ≈ 0.23), not a bias
    error, error_fd = abs(fd_infinity(fake + shift, real) - 4.0), abs(frechet_distance(fake + shift, real) - 4.0)
    assert error < 0.5 and error < error_fd / 2
