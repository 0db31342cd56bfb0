"""CIFAR-10 python batches: read without unpickling arbitrary objects; good files load in
every accepted layout, bad or malicious ones are refused with one line naming the file."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from dpaudit.errors import InvalidParameterError
from dpaudit.training.cifar import read_batch
from dpaudit.training.data import check_dataset, dataset_files, load_dataset
from tests.training.cifar_files import py2_batch, write_cifar


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_official_format_round_trip(tmp_path):
    x, y = write_cifar(tmp_path / "cifar-10-batches-py", n_per_batch=3)
    ds = load_dataset("cifar10", str(tmp_path))
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10 and ds.x_train.dtype == np.float32
    # row layout: 1024 red values, then green, then blue, each 32x32 row-major
    assert np.array_equal(np.rint(ds.x_train * 255).astype(np.uint8).reshape(15, 3072), x)
    assert ds.x_train[0, 1, 0, 1] == np.float32(x[0, 1024 + 1] / 255.0)
    assert np.array_equal(ds.y_train, y)


@pytest.mark.parametrize("layout", ["", "cifar-10-batches-py", "cifar-10/cifar-10-batches-py",
                                    "cifar10/cifar-10-batches-py"])
def test_layouts(tmp_path, layout):
    write_cifar(tmp_path / layout if layout else tmp_path, n_per_batch=2)
    check_dataset("cifar10", str(tmp_path))
    assert load_dataset("cifar-10", str(tmp_path)).x_train.shape[0] == 10
    assert [f.name for f in dataset_files("cifar10", str(tmp_path))][-1] == "test_batch"


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(InvalidParameterError) as exc:
        check_dataset("cifar10", str(tmp_path))
    assert "could not find the CIFAR-10" in _one_line(exc)
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, n_per_batch=2)
    (folder / "data_batch_3").unlink()
    with pytest.raises(InvalidParameterError):
        check_dataset("cifar10", str(tmp_path))


class _System:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    bad = tmp_path / "data_batch_1"
    bad.write_bytes(pickle.dumps({"data": _System(str(marker)), "labels": [1]}, protocol=protocol))
    with pytest.raises(InvalidParameterError) as exc:
        read_batch(bad)
    msg = _one_line(exc)
    assert "refused" in msg and "system" in msg and str(bad) in msg
    assert not marker.exists()


def test_malicious_batch_in_a_folder_is_refused_by_load(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, n_per_batch=2)
    marker = tmp_path / "pwned"
    (folder / "data_batch_4").write_bytes(pickle.dumps(_System(str(marker)), protocol=2))
    with pytest.raises(InvalidParameterError) as exc:
        load_dataset("cifar10", str(tmp_path))
    assert "data_batch_4" in _one_line(exc) and not marker.exists()


def test_other_globals_refused(tmp_path):
    p = tmp_path / "b"
    for payload in (b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1q\x85R.",
                    b"\x80\x02cnumpy\nload\n.",
                    b"\x80\x02c_codecs\nencode\n."):
        p.write_bytes(payload)
        with pytest.raises(InvalidParameterError) as exc:
            read_batch(p)
        assert "refused" in _one_line(exc)


def test_numpy2_pickle_protocol4_reads(tmp_path):
    """numpy 2 writes numpy._core.multiarray._reconstruct (allowed) and raw bytes."""
    x = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    p = tmp_path / "b"
    p.write_bytes(pickle.dumps({"data": x, "labels": [1, 2]}, protocol=4))
    xx, yy = read_batch(p)
    assert np.array_equal(xx.reshape(2, -1), x) and yy.tolist() == [1, 2]


@pytest.mark.parametrize("mutate, expect", [
    (lambda b: b[: len(b) // 2], "corrupt or truncated"),
    (lambda b: b"not a pickle at all", "corrupt or truncated"),
    (lambda b: b"", "corrupt or truncated"),
])
def test_corrupt_files(tmp_path, mutate, expect):
    good = py2_batch(np.zeros((2, 3072), np.uint8), [0, 1])
    p = tmp_path / "b"
    p.write_bytes(mutate(good))
    with pytest.raises(InvalidParameterError) as exc:
        read_batch(p)
    assert expect in _one_line(exc) and str(p) in str(exc.value)


def test_wrong_contents(tmp_path):
    p = tmp_path / "b"
    cases = {
        "type 'O'": py2_batch(np.zeros((2, 3072), np.uint8), [0, 1], dtype=b"O"),
        "labels must be 0..9": py2_batch(np.zeros((2, 3072), np.uint8), [0, 10]),
        "2 images but 3 labels": py2_batch(np.zeros((2, 3072), np.uint8), [0, 1, 2]),
        "expected (n, 3072)": py2_batch(np.zeros((2, 100), np.uint8), [0, 1]),
        "expected a dict": pickle.dumps([1, 2], protocol=2),
        "not a list of integers": pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": ["a"]},
                                               protocol=4),
    }
    for expect, payload in cases.items():
        p.write_bytes(payload)
        with pytest.raises(InvalidParameterError) as exc:
            read_batch(p)
        assert expect in _one_line(exc), expect


def test_array_bytes_must_match_shape(tmp_path):
    good = py2_batch(np.zeros((2, 3072), np.uint8), [0, 1])
    # announce 3 rows while holding the bytes of 2
    bad = good.replace(b"K\x01K\x02M\x00\x0c\x86", b"K\x01K\x03M\x00\x0c\x86")
    assert bad != good
    p = tmp_path / "b"
    p.write_bytes(bad)
    with pytest.raises(InvalidParameterError) as exc:
        read_batch(p)
    assert "needs 9216" in _one_line(exc)
