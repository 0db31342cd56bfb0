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


# ------------------------------------------------------------------ issue 15: run facts
def test_steps_rules():
    whole = DpSgdRun.create(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=60)
    exp = DpSgdRun.create(dataset_size=60000, batch_size=256, noise_multiplier=1.1, epochs=60,
                          steps_rule="expected")
    assert whole.total_steps == 14040 and exp.total_steps == 14062  # Opacus: int(60 / q)
    assert exp.epochs == 61 and exp.steps_in_epoch(60) == 14062 - 60 * 234
    q = DpSgdRun.create(sample_rate=0.01, noise_multiplier=1.0, epochs=2.5, steps_rule="expected")
    assert q.total_steps == 250
    with pytest.raises(InvalidParameterError):
        DpSgdRun.create(sample_rate=0.01, noise_multiplier=1.0, epochs=2, steps_rule="opacus")


def test_checkpoint_and_epoch_segments():
    run = DpSgdRun.create(sample_rate=0.01, noise_multiplier=[3.0, 2.0, 3.0], steps=250)
    run = DpSgdRun.from_dict({**run.to_dict(), "extra_segments": [[0.5, 9.0, 4]]})
    per = run.epoch_segments()
    assert per == ((GaussianSegment(0.01, 3.0, 100),), (GaussianSegment(0.01, 2.0, 100),),
                   (GaussianSegment(0.01, 3.0, 50), GaussianSegment(0.5, 9.0, 4)))
    two = run.checkpoint_segments([2, 3])
    assert set(two[0]) == {GaussianSegment(0.01, 3.0, 100), GaussianSegment(0.01, 2.0, 100)}
    assert two[1] == per[2]
    # every checkpoint split composes to the run's own segments
    def counts(segs):
        out: dict = {}
        for s in segs:
            out[(s.sample_rate, s.noise_multiplier)] = out.get((s.sample_rate, s.noise_multiplier), 0) + s.count
        return out

    assert counts(s for segs in two for s in segs) == counts(run.segments())
    sh = DpSgdRun.create(dataset_size=1000, batch_size=100, noise_multiplier=2.0, epochs=3,
                         batching="shuffle", relation="replace_one")
    assert sh.checkpoint_segments([1, 3]) == ((GaussianSegment(1.0, 1.0, 1),), (GaussianSegment(1.0, 1.0, 2),))
    for bad in ([], [2], [1, 1, 3], [0, 3]):
        with pytest.raises(InvalidParameterError):
            run.checkpoint_segments(bad)


def test_derived_runs_keep_every_other_field():
    run = DpSgdRun.create(dataset_size=1000, batch_size=100, noise_multiplier=[2.0, 1.0], epochs=2)
    run = DpSgdRun.from_dict({**run.to_dict(), "extra_segments": [[0.5, 9.0, 4]]})
    noisy = run.with_noise([5.0, 6.0])
    assert noisy.noise_multipliers == (5.0, 6.0)
    assert (noisy.extra_segments, noisy.dataset_size, noisy.batch_size) == (run.extra_segments, 1000, 100)
    t = run.truncate(1)
    assert t.extra_segments == () and t.total_steps == 10 and t.dataset_size == 1000
    assert run.truncate(2) == run
    sh = run.with_batching("shuffle")
    assert sh.relation == "replace_zero" and sh.extra_segments == run.extra_segments
    assert sh.with_batching("poisson") == run


def test_library_errors_name_no_cli_flags():
    cases = [
        dict(noise_multiplier=1.0, epochs=1),
        dict(noise_multiplier=1.0, sample_rate=0.1),
        dict(noise_multiplier=1.0, sample_rate=0.1, epochs=1, steps=3),
    ]
    for kw in cases:
        with pytest.raises(InvalidParameterError) as exc:
            DpSgdRun.create(**kw)
        assert "--" not in str(exc.value)
    from dpaudit.accounting.events import fill_shape_defaults
    from dpaudit.accounting.report import run_from_values

    with pytest.raises(InvalidParameterError) as exc:
        fill_shape_defaults(None, 256, 0.01)
    assert "--" not in str(exc.value)
    with pytest.raises(InvalidParameterError) as exc:
        run_from_values(noise_multiplier=1.0, epochs=2, steps=3)
    assert "--" not in str(exc.value)
    assert fill_shape_defaults(None, None, None) == (60000, 256, None)
    assert fill_shape_defaults(5000, None, 0.01) == (5000, None, 0.01)
