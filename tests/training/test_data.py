"""IDX data files: good ones load, bad ones are refused with one line naming the file."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dpaudit.errors import InvalidParameterError
from dpaudit.training.data import load_dataset, read_idx

FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _mnist_dir(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for k, name in FILES.items():
        (root / name).write_bytes(gzip.compress(_idx(arrays[k])))
    return root


def test_synthetic_mnist_loads(tmp_path):
    ds = load_dataset("mnist", str(_mnist_dir(tmp_path / "d")))
    assert ds.x_train.shape == (40, 1, 28, 28) and ds.y_test.shape == (20,)
    assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1


def _bad_deflate(good: bytes) -> bytes:
    # keep the 10-byte gzip header, replace the deflate stream by an invalid block type
    return good[:10] + b"\xff" * 64


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _bad_crc(good: bytes) -> bytes:
    return good[:-8] + bytes(b ^ 0xFF for b in good[-8:-4]) + good[-4:]


def _wrong_magic(good: bytes) -> bytes:
    raw = bytearray(gzip.decompress(good))
    raw[2] = 0x0D  # float32 IDX: not what MNIST holds
    return gzip.compress(bytes(raw))


def _short_data(good: bytes) -> bytes:
    return gzip.compress(gzip.decompress(good)[:-5])


def _not_gzip(good: bytes) -> bytes:
    return b"this is not a gzip file at all"


def _bad_labels(good: bytes) -> bytes:
    raw = bytearray(gzip.decompress(good))
    raw[-1] = 200
    return gzip.compress(bytes(raw))


@pytest.mark.parametrize("damage,target,match", [
    (_bad_deflate, "x_train", "corrupt gzip"),
    (_truncated, "x_train", "truncated gzip"),
    (_bad_crc, "y_test", "corrupt gzip"),
    (_wrong_magic, "x_test", "not an unsigned-byte IDX"),
    (_short_data, "y_train", "truncated or padded IDX"),
    (_not_gzip, "y_train", "corrupt gzip"),
    (_bad_labels, "y_train", "labels must be 0..9"),
])
def test_damaged_files_are_refused_naming_the_file(tmp_path, damage, target, match):
    root = _mnist_dir(tmp_path / "d")
    path = root / FILES[target]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(InvalidParameterError, match=match) as exc:
        load_dataset("mnist", str(root))
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1
    if target != "y_train" or damage is not _bad_labels:
        assert str(path) in msg


def test_cli_train_on_a_corrupt_file_is_one_line(tmp_path, capsys):
    from cli.main import main

    root = _mnist_dir(tmp_path / "d")
    path = root / FILES["x_train"]
    path.write_bytes(_bad_deflate(path.read_bytes()))
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "mnist", "--data-dir", str(root), "--epochs", "1", "--quiet",
              "--out", str(tmp_path / "m.pt")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"dpaudit: error: {path}: corrupt gzip file "
                                        f"({err.split('corrupt gzip file (')[1].strip()}"]
    assert "Traceback" not in err and not (tmp_path / "m.pt").exists()


def test_read_idx_plain_file(tmp_path):
    p = tmp_path / "a.idx"
    p.write_bytes(_idx(np.arange(6, dtype=np.uint8).reshape(2, 3)))
    assert read_idx(p).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(InvalidParameterError, match="cannot read IDX file"):
        read_idx(tmp_path / "missing.idx")
