"""pifs.data: the CIFAR-10 reader on files written in the official format; lookup and errors."""
import pickle

import numpy as np
import pytest

from pifs import data


def _write_batch(path, images, labels, encoding_bytes=False):
    d = {"batch_label": "test", "labels": list(map(int, labels)), "data": images.reshape(len(images), -1)}
    if encoding_bytes:  # the originals are python-2 pickles with bytes keys
        d = {k.encode(): v for k, v in d.items()}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


@pytest.fixture
def cifar_root(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        imgs = rng.integers(0, 256, size=(7, 3, 32, 32), dtype=np.uint8)
        labs = rng.integers(0, 10, size=7)
        _write_batch(folder / name, imgs, labs, encoding_bytes=(name == "data_batch_2"))
        batches[name] = (imgs, labs)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return tmp_path, batches


def test_reads_official_format_in_order(cifar_root, monkeypatch):
    root, batches = cifar_root
    monkeypatch.delenv("PIFS_DATA_DIR", raising=False)
    x, y = data.load_cifar10(root, train=True, download=False)
    assert x.dtype == np.uint8 and x.shape == (35, 3, 32, 32) and y.shape == (35,)
    np.testing.assert_array_equal(x[:7], batches["data_batch_1"][0])
    np.testing.assert_array_equal(x[7:14], batches["data_batch_2"][0])  # bytes-keyed pickle too
    np.testing.assert_array_equal(y[28:], batches["data_batch_5"][1])
    xt, yt = data.load_cifar10(root / "cifar-10-batches-py", train=False, download=False)
    np.testing.assert_array_equal(xt, batches["test_batch"][0])
    assert data.load_cifar10(root, download=False, limit=3)[0].shape[0] == 3


def test_env_variable_lookup(cifar_root, monkeypatch):
    root, _ = cifar_root
    monkeypatch.setenv("PIFS_DATA_DIR", str(root))
    assert data.find_cifar10() == root / "cifar-10-batches-py"


def test_missing_dataset_error_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("PIFS_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "_cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(data.DatasetNotFoundError) as exc:
        data.load_cifar10(download=False)
    msg = str(exc.value)
    assert "PIFS_DATA_DIR" in msg and str(tmp_path / "nowhere") in msg and data.CIFAR10_URL in msg


def test_missing_batch_file(cifar_root, monkeypatch):
    root, _ = cifar_root
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="data_batch_3"):
        data.load_cifar10(root, download=False)


def test_to_model_scale():
    x = np.array([0, 127, 255], dtype=np.uint8)
    np.testing.assert_allclose(data.to_model_scale(x), [-1.0, 127 / 127.5 - 1, 1.0])
    with pytest.raises(TypeError, match="uint8"):
        data.to_model_scale(x.astype(np.float32))


def test_bundled_images_are_real_crops():
    ims = data.bundled_images(n=16, size=32, seed=1)
    assert ims.shape == (16, 3, 32, 32) and ims.dtype == np.uint8
    assert ims.std() > 10  # natural images, not constant
    np.testing.assert_array_equal(ims, data.bundled_images(n=16, size=32, seed=1))
    cam = data.bundled_photograph("camera")
    assert cam.shape == (512, 512) and 0 <= cam.min() and cam.max() <= 255
