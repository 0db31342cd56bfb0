"""ScatterNet features: shapes, the cache (computed once, keyed on file contents and
parameters, written atomically) and the image-level wrapper."""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np
import pytest

from dpaudit.errors import InvalidParameterError
from dpaudit.training import features as feat
from dpaudit.training.data import load_dataset
from tests.training.test_data import _mnist_dir

pytest.importorskip("kymatio")


def test_channel_count_formula():
    assert feat.ScatterNet().channels_per_input == 81  # 1 + J L + L^2 J (J - 1) / 2
    assert feat.ScatterNet(J=3, L=4).channels_per_input == 1 + 12 + 16 * 3
    assert feat.ScatterNet(max_order=1).channels_per_input == 17
    assert feat.ScatterNet().output_shape((3, 32, 32)) == (243, 8, 8)
    assert feat.ScatterNet().output_shape((1, 28, 28)) == (81, 7, 7)


def test_module_matches_shape_and_is_deterministic():
    import torch

    m = feat.scatternet_module((2, 16, 16))
    x = torch.rand(2, 2, 16, 16)
    y = m(x)
    assert tuple(y.shape) == (2, 162, 4, 4)  # 2 input channels x 81
    assert torch.equal(y, m(x))
    # order-0 channel of a constant image is the constant (a low-pass average)
    c = m(torch.full((1, 2, 16, 16), 0.5))
    assert torch.allclose(c[0, 0], torch.full((4, 4), 0.5), atol=1e-4)


def test_cache_computes_once_and_keys_on_contents(tmp_path, monkeypatch):
    data_dir = _mnist_dir(tmp_path / "d")
    ds = load_dataset("mnist", str(data_dir))
    cache = tmp_path / "cache"
    f1 = feat.scatternet_dataset(ds, str(data_dir), cache_dir=str(cache))
    assert f1.x_train.shape == (40, 81, 7, 7) and f1.input_shape == (81, 7, 7)
    assert f1.features["kind"] == "scatternet" and f1.features["J"] == 2
    assert np.array_equal(f1.y_train, ds.y_train)
    entries = [p for p in cache.iterdir()]
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no temporary left

    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(feat, "compute_features", boom)
    f2 = feat.scatternet_dataset(ds, str(data_dir), cache_dir=str(cache))
    assert np.array_equal(np.asarray(f2.x_train), np.asarray(f1.x_train))
    assert isinstance(f2.x_train, np.memmap)
    # keyed on the arrays unless the data are exactly the files' (from_files)
    akey = feat.cache_key("mnist", None, feat.ScatterNet(), data=ds)
    assert entries[0].name.endswith(akey)
    canary = dataclasses.replace(ds, x_train=ds.x_train.copy())
    canary.x_train[0, 0, 0, 0] = 1.0 - canary.x_train[0, 0, 0, 0]
    assert feat.cache_key("mnist", None, feat.ScatterNet(), data=canary) != akey
    monkeypatch.undo()
    f3 = feat.scatternet_dataset(ds, str(data_dir), cache_dir=str(cache), from_files=True)
    assert f3.features["cache_key"] == feat.cache_key("mnist", str(data_dir), feat.ScatterNet()) != akey
    key1 = feat.cache_key("mnist", str(data_dir), feat.ScatterNet())
    assert feat.cache_key("mnist", str(data_dir), feat.ScatterNet(L=6)) != key1
    # another training image: another key
    p = data_dir / "train-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(p.read_bytes()))
    raw[-1] ^= 0xFF
    p.write_bytes(gzip.compress(bytes(raw)))
    assert feat.cache_key("mnist", str(data_dir), feat.ScatterNet()) != key1


def test_damaged_cache_entry_is_recomputed(tmp_path):
    data_dir = _mnist_dir(tmp_path / "d", n_train=8, n_test=4)
    ds = load_dataset("mnist", str(data_dir))
    cache = tmp_path / "cache"
    expect = np.array(feat.scatternet_dataset(ds, str(data_dir), cache_dir=str(cache)).x_test)
    entry = next(cache.iterdir())
    (entry / "x_test.npy").unlink()  # never truncate a file another reader may have mapped
    (entry / "x_test.npy").write_bytes(b"garbage")
    assert feat._read_entry(entry, (81, 7, 7)) is None
    # the damaged folder blocks the rename; the features are still returned (computed)
    f2 = feat.scatternet_dataset(ds, str(data_dir), cache_dir=str(cache))
    assert np.allclose(np.asarray(f2.x_test), expect)


def test_image_model_wraps_the_transform(tmp_path):
    import torch

    from dpaudit.training.models import build_model

    head = build_model("logreg", (81, 7, 7), 10)
    wrapped = feat.image_model(head, {"features": feat.ScatterNet().describe((1, 28, 28))})
    x = torch.rand(3, 1, 28, 28)
    expect = head(feat.scatternet_module((1, 28, 28))(x))
    assert torch.allclose(wrapped(x), expect, atol=1e-6)
    assert feat.image_model(head, {"features": None}) is head


def test_check_features(monkeypatch):
    feat.check_features("none")
    feat.check_features("scatternet")
    with pytest.raises(InvalidParameterError, match="features must be one of"):
        feat.check_features("sift")
    monkeypatch.setattr(feat.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InvalidParameterError, match="kymatio"):
        feat.check_features("scatternet")
