import numpy as np
import pytest
import torch

from conftest import shared_file
from waveletflow.data import dequantize, load_dataset, quantize, random_crop, random_flip, reduce_bits, to_tensor


def test_digits_embedded():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1500, 8, 8, 1) and ds.x_test.shape == (297, 8, 8, 1)
    assert ds.x_train.dtype == np.uint8 and ds.n_bits == 5
    assert ds.x_train.max() == 16 and ds.x_train.min() == 0


@pytest.mark.parametrize("name,n_train,n_test,shape", [
    ("mnist.npz", 60000, 10000, (28, 28, 1)),
    ("cifar10_partial.npz", 8152, 1017, (32, 32, 3)),
])
def test_shared_npz(name, n_train, n_test, shape):
    ds = load_dataset(str(shared_file(name)))
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    assert ds.x_train.dtype == np.uint8 and ds.n_bits == 8
    x = dequantize(to_tensor(ds.x_test[:500]), 8)
    assert x.shape == (500, shape[2], shape[0], shape[1])
    assert float(x.min()) >= 0.0 and float(x.max()) < 1.0
    assert torch.equal(quantize(x, 8), to_tensor(ds.x_test[:500]))  # dequantisation stays in its bin


def test_dequantize_range_and_bins():
    k = torch.randint(0, 32, (64, 1, 4, 4))
    x = dequantize(k, 5, torch.Generator().manual_seed(0))
    assert float(x.min()) >= 0 and float(x.max()) < 1
    assert torch.equal(quantize(x, 5), k)
    assert torch.equal(dequantize(torch.full((1, 1, 1, 1), 255), 8, dtype=torch.float32).floor(), torch.zeros(1, 1, 1, 1))
    with pytest.raises(ValueError):
        dequantize(torch.tensor([[[[40]]]]), 5)
    with pytest.raises(ValueError):
        dequantize(k, 9)


def test_reduce_bits():
    k = torch.tensor([0, 7, 8, 255])
    assert reduce_bits(k, 8, 5).tolist() == [0, 0, 1, 31]
    with pytest.raises(ValueError):
        reduce_bits(k, 5, 8)


def test_crop_and_flip():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    c = random_crop(x, 4, g)
    assert c.shape == (2, 1, 4, 4)
    # each crop is a contiguous window of its own image
    for i in range(2):
        y0, x0 = divmod(int(c[i, 0, 0, 0] - x[i, 0, 0, 0]), 6)
        assert torch.equal(c[i], x[i, :, y0 : y0 + 4, x0 : x0 + 4])
    flips = [random_flip(x, torch.Generator().manual_seed(s)) for s in range(8)]
    assert any(torch.equal(f[0], x[0].flip(-1)) for f in flips) and any(torch.equal(f[0], x[0]) for f in flips)
    with pytest.raises(ValueError):
        random_crop(x, 8)


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(tmp_path / f"im{i:02d}.png")
    ds = load_dataset(str(tmp_path), image_size=16)
    assert len(ds.x_train) + len(ds.x_test) == 12 and len(ds.x_test) >= 1
    batch = ds.x_train[np.array([0, 2])]
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
    assert ds.x_test[0].shape == (16, 16, 3)
    with pytest.raises(ValueError, match="different sizes"):
        load_dataset(str(tmp_path))


def test_npz_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="x_train"):
        load_dataset(str(bad))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_train=np.zeros((2, 4, 4, 1), np.float32), x_test=np.zeros((2, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_dataset(str(wrong))
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet-9000")
