import math

import pytest

from dpaudit.accounting import DpSgdRun, GaussianSegment
from dpaudit.errors import InvalidParameterError


def test_create_from_sizes_poisson():
    run = DpSgdRun.create(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=60)
    assert run.steps_per_epoch == 234
    assert run.total_steps == 234 * 60
    assert run.epochs == 60
    assert run.relation == "add_remove"
    assert run.poisson_segments() == (GaussianSegment(256 / 60000, 1.1, 234 * 60),)


def test_shuffle_view_is_one_gaussian_per_epoch():
    run = DpSgdRun.create(
        dataset_size=1000, batch_size=100, noise_multiplier=[2.0, 1.0], epochs=2, batching="shuffle"
    )
    assert set(run.shuffle_segments()) == {GaussianSegment(1.0, 2.0, 1), GaussianSegment(1.0, 1.0, 1)}
    r1 = DpSgdRun.create(
        dataset_size=1000, batch_size=100, noise_multiplier=2.0, epochs=2, batching="shuffle",
        relation="replace_one",
    )
    assert r1.shuffle_segments() == (GaussianSegment(1.0, 1.0, 2),)


def test_partial_epoch_and_roundtrip():
    run = DpSgdRun.create(sample_rate=0.01, noise_multiplier=[3.0, 2.0], steps=150)
    assert run.steps_per_epoch == 100 and run.steps_in_epoch(1) == 50
    assert DpSgdRun.from_dict(run.to_dict()) == run
    assert run.truncate(1).total_steps == 100


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(dataset_size=100, batch_size=200, noise_multiplier=1.0, epochs=1),
        dict(sample_rate=1.5, noise_multiplier=1.0, epochs=1),
        dict(sample_rate=0.1, noise_multiplier=-1.0, epochs=1),
        dict(sample_rate=0.1, noise_multiplier=1.0, epochs=0),
        dict(sample_rate=math.nan, noise_multiplier=1.0, epochs=1),
        dict(sample_rate=0.1, noise_multiplier=1.0, epochs=1, batching="random"),
    ],
)
def test_bad_input_raises(kwargs):
    with pytest.raises(InvalidParameterError):
        DpSgdRun.create(**kwargs)
