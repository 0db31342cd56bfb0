"""Data-independent augmentations, augmentation multiplicity in the trainer, its configuration
and command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from dpaudit.errors import InvalidParameterError
from dpaudit.training import TrainConfig, load_dataset, resolve_config, train
from dpaudit.training.augment import Augmenter, random_crop

torch.set_num_threads(1)


def _crops(img, pad, flip):
    """Every crop (and mirror) random_crop may return for one (C, H, W) image."""
    c, h, w = img.shape
    p = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    out = [p[:, i:i + h, j:j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return out + ([o.flip(-1) for o in out] if flip else [])


@pytest.mark.parametrize("kind,pad,flip", [("flip-crop", 4, True), ("shift", 2, False)])
def test_each_row_is_a_padded_crop_or_its_mirror(kind, pad, flip):
    torch.manual_seed(0)
    x = torch.rand(40, 3, 10, 9) + 0.5  # no zeros: a crop is identified by its values
    out = Augmenter(kind, 1, torch.Generator().manual_seed(1))(x)
    assert out.shape == x.shape
    for i in range(len(x)):
        assert any(torch.equal(out[i], c) for c in _crops(x[i], pad, flip)), i


def test_offsets_and_flips_are_uniform():
    """25 shift offsets equally likely (chi-square), mirroring with probability 1/2."""
    n = 5000
    x = torch.zeros(n, 1, 5, 5)
    x[:, 0, 2, 2] = 1.0  # a single lit pixel: its position after the crop is the offset
    out = random_crop(x, 2, False, torch.Generator().manual_seed(2))
    pos = out.reshape(n, 25).argmax(1).numpy()
    assert (out.reshape(n, 25).sum(1) == 1).all()  # never cropped away at pad 2, 5x5
    counts = np.bincount(pos, minlength=25)
    assert stats.chisquare(counts).pvalue > 1e-4
    ramp = torch.arange(6.0).expand(n, 1, 1, 6)  # left-right ramp
    mirrored = random_crop(ramp, 0, True, torch.Generator().manual_seed(3))[:, 0, 0, 0] == 5
    assert stats.binomtest(int(mirrored.sum()), n, 0.5).pvalue > 1e-4


def test_randomness_does_not_depend_on_the_data():
    """Same generator state, different images: the same crops (the map is linear in x for
    fixed randomness, so aug(a + b) = aug(a) + aug(b) holds only if the draws agree)."""
    a, b = torch.rand(64, 3, 8, 8), torch.rand(64, 3, 8, 8) * 100
    aug = [random_crop(t, 4, True, torch.Generator().manual_seed(9)) for t in (a, b, a + b)]
    torch.testing.assert_close(aug[2], aug[0] + aug[1])


def test_multiplicity_gives_k_consecutive_copies_of_each_example():
    k = 4
    x = torch.rand(6, 1, 7, 7) + 0.5
    out = Augmenter("shift", k, torch.Generator().manual_seed(4))(x)
    assert out.shape == (6 * k, 1, 7, 7)
    for i in range(6 * k):
        assert any(torch.equal(out[i], c) for c in _crops(x[i // k], 2, False))
    # the copies are augmented independently (not K identical rows)
    assert not all(torch.equal(out[0], out[j]) for j in range(1, k))


def test_bad_augmenter_arguments():
    with pytest.raises(InvalidParameterError, match="augmentation must be one of"):
        Augmenter("rotate")
    with pytest.raises(InvalidParameterError, match="multiplicity"):
        Augmenter("shift", 0)
    with pytest.raises(InvalidParameterError, match="N, C, H, W"):
        Augmenter("shift")(torch.zeros(3, 4))


# ----------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("kw,match", [
    ({"augment": "rotate"}, "augmentation must be one of"),
    ({"augment": "shift", "augment_multiplicity": 0}, "augmentation multiplicity must be a positive integer"),
    ({"augment_multiplicity": 2}, "needs an augmentation"),
    ({"augment": "none", "augment_multiplicity": 2}, "needs an augmentation"),
    ({"augment": "shift", "augment_multiplicity": 1.5}, "positive integer"),
])
def test_bad_augmentation_config_refused(kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        resolve_config(TrainConfig(**kw))


def test_augmentation_config_resolves_and_is_idempotent():
    c = resolve_config(TrainConfig(augment="shift", augment_multiplicity=3))
    assert (c.augment, c.augment_multiplicity, c.augmentation()) == ("shift", 3, "shift")
    assert resolve_config(c) == c
    assert resolve_config(TrainConfig(augment="none")).augmentation() is None


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_multiplicity_leaves_the_accounting_unchanged(digits):
    """Same sigma, q and steps with and without K = 4: the same epsilon (sensitivity C)."""
    kw = {"noise_multiplier": 1.5, "epochs": 2, "accountant": "rdp", "reproducible": True}
    plain = train(TrainConfig(**kw), dataset=digits, progress=False)
    aug = train(TrainConfig(**kw, augment="shift", augment_multiplicity=4), dataset=digits, progress=False)
    m = aug.metadata
    assert m["epsilon"] == plain.metadata["epsilon"] and m["ledger"] == plain.metadata["ledger"]
    assert m["levers"]["augment"] == "shift" and m["levers"]["augment_multiplicity"] == 4
    assert m["config"]["augment_multiplicity"] == 4 and plain.metadata["levers"]["augment"] is None


class _Rows(torch.nn.Module):
    """A small MLP that records how many rows each training forward pass sees."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        self.rows: list[int] = []

    def forward(self, x):
        if self.training:
            self.rows.append(x.shape[0])
        return self.net(x)


@pytest.mark.parametrize("private", [True, False])
def test_the_loop_trains_on_k_copies_per_example(digits, private):
    k, model = 3, _Rows()
    budget = {"noise_multiplier": 1.0, "accountant": "rdp"} if private else {"no_privacy": True}
    res = train(TrainConfig(**budget, epochs=1, batching="shuffle", batch_size=100, augment="shift",
                            augment_multiplicity=k), dataset=digits, model=model, progress=False)
    assert sum(model.rows) == k * len(digits.y_train) and all(r % k == 0 for r in model.rows)
    assert res.history[0]["loss"] > 0


def test_cli_augment_flags(tmp_path, capsys):
    from cli.main import main

    main(["train", "--noise-multiplier", "2", "--epochs", "1", "--accountant", "rdp", "--augment", "shift",
          "--augment-multiplicity", "2", "--out", str(tmp_path / "m.pt"), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["levers"]["augment"] == "shift" and d["levers"]["augment_multiplicity"] == 2
    with pytest.raises(SystemExit) as exc:
        main(["train", "--augment-multiplicity", "2", "--out", str(tmp_path / "n.pt"), "--quiet"])
    assert exc.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "needs an augmentation" in err[0] and "--" not in err[0].split(":", 1)[1]
    assert not (tmp_path / "n.pt").exists()
