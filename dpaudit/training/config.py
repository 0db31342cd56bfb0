"""Training configuration: :class:`TrainConfig`, the per-data-set defaults, and the rules a
configuration must follow -- value ranges and where the privacy budget comes from.

The library and the command line enforce the same rules because both call
:func:`resolve_config`. This module never imports torch (nor the data), so a bad value is
refused in a fraction of a second, before the trainer starts.

Budget sources (exactly one; :func:`check_budget_sources`):

* a saved noise plan (``plan_path``): it fixes the noise per epoch, the epochs and the target
  epsilon -- no ``epsilon``, ``noise_multiplier`` or ``schedule`` beside it;
* a target ``epsilon``: a plan is solved for it with ``schedule`` (default when nothing else
  is given: :data:`DEFAULT_EPSILON`);
* an explicit ``noise_multiplier`` (constant per step), optionally with a target ``epsilon``
  at which training stops;
* ``no_privacy``: plain SGD, with none of the above (nor screening).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from dpaudit.accounting import BATCHINGS, SOUND_ACCOUNTANTS, normalize_batching
from dpaudit.allocation import SCHEDULES as _SCHEDULE_CLASSES
from dpaudit.errors import InvalidParameterError
from dpaudit.training.archs import check_arch_options
from dpaudit.training.features import check_features

if TYPE_CHECKING:
    from dpaudit.allocation import Plan

DEFAULT_EPSILON = 2.0
DEFAULT_DELTA = 1e-5
#: Held-out examples scored after each epoch (a fixed seeded subset of the held-out split).
DEFAULT_EVAL_SIZE = 2000
#: Fraction of the train split kept as members when the noise schedule needs validation data.
VALIDATION_MEMBER_FRACTION = 0.9

#: Noise schedules a plan can be solved with (:mod:`dpaudit.allocation.schedules`).
SCHEDULES: tuple[str, ...] = tuple(_SCHEDULE_CLASSES)
#: Update-screening rules (``none`` = plain DP-SGD; see :mod:`dpaudit.training.screening`).
SCREENING_RULES: tuple[str, ...] = ("none", "sa", "dpsur")
#: Learning-rate schedules (:func:`dpaudit.training.levers.lr_factor`).
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")
#: Data-independent image augmentations (:mod:`dpaudit.training.augment`); "none" = no
#: augmentation, also when a data set's defaults name one.
AUGMENTATIONS: tuple[str, ...] = ("flip-crop", "shift")
#: Accountants the trainer may use for its ledger (sound upper bounds only).
TRAIN_ACCOUNTANTS: tuple[str, ...] = tuple(SOUND_ACCOUNTANTS)

#: Noise multiplier of privately computed input statistics (``input_norm = "data"``;
#: Tramer & Boneh 2021's value; :mod:`dpaudit.training.datanorm`).
DEFAULT_NORM_SIGMA = 8.0

#: Hyper-parameter defaults per data set, chosen on a held-out validation split of the
#: training set (never the test set); see docs/training.md. Every private default publishes an
#: exponential moving average of the weights (``ema_decay`` 0.995, post-processing), as the
#: accuracy table does; ``ema_decay=0`` publishes the last iterate.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"arch": "mlp", "epochs": 30, "batch_size": 128, "clip": 1.0, "lr": 0.5, "momentum": 0.0,
               "screen_batch_size": 64, "screen_sigma": 4.0, "lr_schedule": "constant"},
    # End-to-end tanh CNN of Tramer & Boneh 2021 (ICLR, App. B), C = 0.1, momentum 0.9, with
    # batch 2048 and lr 4 (their Fashion-MNIST setting) and inputs centred to [-1, 1], for both
    # data sets; 30 epochs to fit the CPU time goal. Chosen at epsilon = 2 on a validation split
    # of the training set (10 % held out, no test data); the grid and its results are in
    # docs/benchmarks.md (section Accuracy) and docs/accuracy_results.json.
    "mnist": {"arch": "cnn", "arch_kwargs": {"center": True}, "epochs": 30, "batch_size": 2048,
              "clip": 0.1, "lr": 4.0, "momentum": 0.9, "screen_batch_size": 256,
              "screen_sigma": 1.0, "lr_schedule": "constant", "ema_decay": 0.995},
    "fashion-mnist": {"arch": "cnn", "arch_kwargs": {"center": True}, "epochs": 30,
                      "batch_size": 2048, "clip": 0.1, "lr": 4.0, "momentum": 0.9,
                      "screen_batch_size": 256, "screen_sigma": 1.0, "lr_schedule": "constant",
                      "ema_decay": 0.995},
    # Tramer & Boneh 2021's CIFAR-10 tanh CNN with ImageNet-normalised inputs (their
    # preprocessing), C = 0.1, momentum 0.9; batch 1024 and lr 2 = (batch / 512) x 1 from their
    # published grid (batch 512..16384, lr = batch / 512 x {0.125 .. 1}, 30/60/120 epochs). Not
    # tuned here: one CIFAR-10 epoch of this CNN costs ~8 CPU minutes on the reference machine.
    "cifar10": {"arch": "cifar-cnn", "arch_kwargs": {"input_norm": "imagenet"}, "epochs": 30,
                "batch_size": 1024, "clip": 0.1, "lr": 2.0, "momentum": 0.9,
                "screen_batch_size": 256, "screen_sigma": 1.0, "lr_schedule": "constant",
                "ema_decay": 0.995},
}
#: Defaults of runs on fixed features (``features``), merged over :data:`DATASET_DEFAULTS`:
#: Tramer & Boneh 2021's "ScatterNet + linear" recipes (their grid's best cells as DPSUR's
#: README reproduces them): MNIST data normalisation (sigma_norm 8), batch 1024, lr 2 (here
#: batch 4096, lr 8: the best of four points on a validation split at epsilon = 2);
#: Fashion-MNIST GroupNorm with 27 groups, batch 2048, lr 4; CIFAR-10 data normalisation,
#: batch 8192, lr 4; C = 0.1, momentum 0.9. ``norm_clip`` (C_m, C_s) bounds each member's
#: per-channel mean and mean-square vectors (:mod:`dpaudit.training.datanorm`): sqrt(c) and c
#: for images with c channels in [0, 1], which the (non-expansive) transform keeps below. The values
#: chosen per epsilon on a validation split are in docs/benchmarks.md (section Accuracy).
FEATURE_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("mnist", "scatternet"): {"arch": "logreg", "arch_kwargs": {"input_norm": "data"}, "epochs": 40,
                              "batch_size": 4096, "lr": 8.0, "norm_clip": (1.0, 1.0)},
    ("fashion-mnist", "scatternet"): {"arch": "logreg",
                                      "arch_kwargs": {"input_norm": "group", "norm_groups": 27},
                                      "epochs": 40, "batch_size": 2048, "lr": 4.0, "norm_clip": (1.0, 1.0)},
    ("cifar10", "scatternet"): {"arch": "logreg", "arch_kwargs": {"input_norm": "data"}, "epochs": 60,
                                "batch_size": 8192, "lr": 4.0, "norm_clip": (math.sqrt(3.0), 3.0)},
}
#: Overrides for ``no_privacy`` runs (no clipping: the gradient is not bounded by C, so the
#: private learning rate diverges); batch 512, lr 0.1 + momentum 0.9 reached 98.8 % on MNIST.
NONPRIVATE_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {"lr": 0.1, "momentum": 0.9, "batch_size": 512},
    "fashion-mnist": {"lr": 0.1, "momentum": 0.9, "batch_size": 512},
    "cifar10": {"lr": 0.1, "momentum": 0.9, "batch_size": 256},
}
_FALLBACK_DEFAULTS = DATASET_DEFAULTS["mnist"]


def check_lr_schedule(kind: str | None) -> str:
    """``kind`` if it names one of :data:`LR_SCHEDULES`, else a clear error."""
    if kind not in LR_SCHEDULES:
        raise InvalidParameterError(f"lr schedule must be one of {', '.join(LR_SCHEDULES)}, got {kind!r}")
    return str(kind)


@dataclass(frozen=True)
class ScreeningConfig:
    """Parameters of update screening (:mod:`dpaudit.training.screening`).

    Attributes:
        rule: ``"sa"`` or ``"dpsur"``.
        clip: C_v, bound on each example's loss change |l_i(w') - l_i(w)| (loss units, nats).
        noise_multiplier: sigma_v; the noise on the clipped sum has std sigma_v * C_v.
        batch_size: expected validation batch size B_v; q_v = B_v / N (N training members).
        beta: DPSUR threshold: accept iff S < beta * C_v.
        k: SA temperature constant (acceptance exp(-Delta E * k * t)).
        max_rejects: SA: accept unconditionally after this many consecutive rejections.
    """

    rule: str = "dpsur"
    clip: float = 0.1
    noise_multiplier: float = 1.0
    batch_size: int = 256
    beta: float = -1.0
    k: float = 10.0
    max_rejects: int = 5

    def __post_init__(self) -> None:
        if self.rule not in ("sa", "dpsur"):
            raise InvalidParameterError(f"screening rule must be 'sa' or 'dpsur', got {self.rule!r}")
        for name in ("clip", "noise_multiplier", "k"):
            _positive_finite(f"screening {name}", getattr(self, name))
        _positive_int("validation batch size", self.batch_size)
        if not math.isfinite(float(self.beta)):
            raise InvalidParameterError(f"beta must be finite, got {self.beta!r}")
        _positive_int("max_rejects", self.max_rejects)

    def sample_rate(self, n: int) -> float:
        """q_v = B_v / N."""
        if self.batch_size > n:
            raise InvalidParameterError(f"validation batch size {self.batch_size} exceeds the {n} training members")
        return self.batch_size / n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainConfig:
    """Training configuration; ``None`` means "the data set's default" (:data:`DATASET_DEFAULTS`).

    Units: ``epsilon``/``delta`` the (epsilon, delta)-DP budget; ``clip`` the per-example L2
    clipping norm C; ``noise_multiplier`` sigma = noise std / C; ``batch_size`` the expected
    batch size B (q = B/N, N = number of training members); ``lr`` the SGD step size applied
    to the averaged noisy gradient, decayed per step by ``lr_schedule`` ("constant", "cosine",
    "linear"; :func:`dpaudit.training.levers.lr_factor`). ``arch_kwargs`` are merged over the
    data set's model options when ``arch`` is the data set's default model.

    Budget: one of ``plan_path``, ``epsilon``, ``noise_multiplier`` (optionally with
    ``epsilon`` as a stopping budget) or ``no_privacy`` (see the module docstring); with none
    given the target is :data:`DEFAULT_EPSILON`.

    Evaluation: with ``evaluate`` (default) the model is scored after each epoch on at most
    ``eval_size`` held-out examples (a fixed seeded subset; ``None`` = all held-out examples)
    and once at the end on the test split. ``evaluate=False`` skips both (e.g. shadow models
    that are scored by their caller); the validation schedule still scores the held-out
    subset, which its noise rule needs.

    Randomness: ``seed`` fixes the member split and the initial weights (both public, stored in
    the metadata). Batch sampling and the Gaussian noise must stay secret, so by default they
    draw fresh OS entropy; ``reproducible=True`` derives them from ``seed`` too (for tests and
    experiments; the model is then not private against anyone who knows the seed, and the
    metadata notes it). Runs with ``no_privacy`` are always seeded.

    Augmentation: ``augment`` names a data-independent augmentation (:data:`AUGMENTATIONS`;
    ``None`` = the data set's default, ``"none"`` = no augmentation) and
    ``augment_multiplicity`` K the augmented copies per example whose gradients are averaged
    before clipping (De et al. 2022, Sec. 3.2; the accounting is unchanged; K > 1 needs an
    augmentation). See :mod:`dpaudit.training.augment`.

    Features: ``features="scatternet"`` trains on the ScatterNet features of the images
    (:mod:`dpaudit.training.features`, cached in ``feature_cache``) with the defaults of
    :data:`FEATURE_DEFAULTS`. A model with ``input_norm = "data"`` gets per-channel input
    statistics computed privately before training with noise multiplier ``norm_sigma``
    (default :data:`DEFAULT_NORM_SIGMA`) and per-member bounds ``norm_clip`` = (C_m, C_s);
    that release is charged to the budget (:mod:`dpaudit.training.datanorm`).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    arch: str | None = None
    arch_kwargs: dict = field(default_factory=dict)
    epsilon: float | None = None
    delta: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    batching: str = "poisson"
    schedule: str = "constant"
    plan_path: str | None = None
    clip: float | None = None
    lr: float | None = None
    momentum: float | None = None
    noise_multiplier: float | None = None
    no_privacy: bool = False
    seed: int = 0
    device: str = "cpu"
    accountant: str = "pld"
    member_fraction: float = 1.0
    threads: int | None = None
    reproducible: bool = False
    screening: str = "none"
    screen_clip: float = 0.1
    screen_sigma: float | None = None
    screen_batch_size: int | None = None
    screen_beta: float = -1.0
    sa_k: float = 10.0
    sa_max_rejects: int = 5
    ema_decay: float | None = None
    lr_schedule: str | None = None
    evaluate: bool = True
    eval_size: int | None = DEFAULT_EVAL_SIZE
    augment: str | None = None
    augment_multiplicity: int = 1
    features: str = "none"
    feature_cache: str | None = None
    norm_sigma: float | None = None
    norm_clip: tuple[float, float] | None = None

    def augmentation(self) -> str | None:
        """The augmentation this run applies (``None`` for none)."""
        return None if self.augment in (None, "none") else self.augment

    def screening_config(self) -> ScreeningConfig | None:
        """The :class:`ScreeningConfig` of this run (``None`` without screening)."""
        if self.screening == "none":
            return None
        return ScreeningConfig(rule=self.screening, clip=self.screen_clip,
                               noise_multiplier=float(self.screen_sigma or 1.0),
                               batch_size=int(self.screen_batch_size or 256), beta=self.screen_beta,
                               k=self.sa_k, max_rejects=self.sa_max_rejects)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- resolution
def load_plan(config: TrainConfig) -> Plan | None:
    """The saved noise plan named by ``config.plan_path`` (``None`` without one or without
    privacy). Reads JSON only (:meth:`dpaudit.allocation.Plan.load`)."""
    if not config.plan_path or config.no_privacy:
        return None
    from dpaudit.allocation import Plan

    return Plan.load(config.plan_path)


def preflight(config: TrainConfig) -> TrainConfig:
    """Everything that can be checked before torch is imported and the data are read: the
    plan file, the configuration's rules (:func:`resolve_config`) and that the named data
    set's files are there. Returns the resolved configuration."""
    from dpaudit.training.data import check_dataset

    cfg = resolve_config(config, load_plan(config))
    check_dataset(cfg.dataset, cfg.data_dir)
    return cfg


def needs_validation(config: TrainConfig, plan: Plan | None = None) -> bool:
    """Whether the run's noise depends on held-out accuracy (the validation schedule)."""
    if plan is not None:
        return plan.runtime_rule is not None
    return config.schedule == "validation" and not config.no_privacy and config.noise_multiplier is None


def resolve_config(config: TrainConfig, plan: Plan | None = None) -> TrainConfig:
    """Validate ``config`` and fill the data set's defaults (returns a new config).

    ``plan``: the loaded plan of ``config.plan_path`` (:func:`load_plan`, loaded here if not
    given); its batch size, epochs, delta and accountant are the run's. Resolving a resolved
    configuration changes nothing.
    Raises :class:`InvalidParameterError` with one readable line on any violated rule.
    """
    c = dataclasses.replace(config, arch_kwargs=dict(config.arch_kwargs),
                            batching=normalize_batching(config.batching))
    if config.plan_path and not config.no_privacy and plan is None:
        plan = load_plan(config)
    _fill_defaults(c, plan)
    check_budget_sources(c)
    _check_choices(c)
    _check_numbers(c)
    _check_screening(c)
    _check_augmentation(c)
    if c.member_fraction == 1.0 and needs_validation(c, plan):
        c.member_fraction = VALIDATION_MEMBER_FRACTION
    return c


def _fill_defaults(c: TrainConfig, plan: Plan | None) -> None:
    if plan is not None:
        _fill_from_plan(c, plan)
    d = DATASET_DEFAULTS.get(c.dataset.lower(), _FALLBACK_DEFAULTS)
    if c.features != "none":
        feat = FEATURE_DEFAULTS.get((c.dataset.lower(), c.features), {})
        d = {**d, **feat}
        if c.arch is not None and c.arch != feat.get("arch"):
            d.pop("arch_kwargs", None)  # the features' model options are for their model
    if c.no_privacy:
        d = {**d, **NONPRIVATE_DEFAULTS.get(c.dataset.lower(), {})}
    for k, v in d.items():
        if k == "arch_kwargs":
            # the data set's model options apply to its default model only; the user's win
            if c.arch is None or c.arch == d.get("arch"):
                c.arch_kwargs = {**v, **c.arch_kwargs}
        elif getattr(c, k) is None:
            setattr(c, k, v)
    if c.delta is None:
        c.delta = DEFAULT_DELTA
    if c.norm_sigma is None and c.arch_kwargs.get("input_norm") == "data" and not c.no_privacy:
        c.norm_sigma = DEFAULT_NORM_SIGMA
    if c.norm_clip is None and c.arch_kwargs.get("input_norm") == "data":
        c.norm_clip = (1.0, 1.0)
    if c.epsilon is None and not (c.no_privacy or c.plan_path or c.noise_multiplier is not None):
        c.epsilon = DEFAULT_EPSILON


def _fill_from_plan(c: TrainConfig, plan: Plan) -> None:
    """A plan fixes the run it was solved for: its B, epochs, delta and accountant are the
    defaults, and a different B, epoch count, delta or batching beside it is refused."""
    r = plan.run
    for attr, label, planned in (("batch_size", "batch size", r.batch_size), ("epochs", "epochs", r.epochs),
                                 ("delta", "delta", plan.delta)):
        given = getattr(c, attr)
        if given is None:
            setattr(c, attr, planned)
        elif planned is not None and given != planned:
            raise InvalidParameterError(
                f"the plan is for {label} {planned}, this run asks for {given}: re-plan for "
                f"{given} or leave the {label} to the plan"
            )
    if c.batching != r.batching:
        raise InvalidParameterError(
            f"the plan is for {r.batching} batching, this run asks for {c.batching}: re-plan for "
            f"{c.batching} batching"
        )
    c.accountant = plan.accountant


def check_budget_sources(c: TrainConfig) -> None:
    """Exactly one source of the privacy budget (see the module docstring)."""
    if c.no_privacy:
        given = [name for name, v in (("target epsilon", c.epsilon), ("noise plan", c.plan_path),
                                      ("noise multiplier", c.noise_multiplier)) if v is not None]
        if given:
            raise InvalidParameterError(f"a run without privacy takes no {' or '.join(given)}")
        if c.screening != "none":
            raise InvalidParameterError("screening is a private mechanism; it cannot run without privacy")
    elif c.plan_path:
        if c.epsilon is not None:
            raise InvalidParameterError("a noise plan sets the budget; give no target epsilon with it")
        if c.noise_multiplier is not None:
            raise InvalidParameterError("give either a noise plan or a noise multiplier, not both")
    if c.schedule != "constant" and (c.no_privacy or c.plan_path or c.noise_multiplier is not None):
        raise InvalidParameterError(
            f"the noise schedule ({c.schedule!r}) shapes the noise solved for a target epsilon; "
            "it does not apply to a saved plan, an explicit noise multiplier or a run without privacy"
        )


def _check_choices(c: TrainConfig) -> None:
    for name, value, choices in (("batching", c.batching, BATCHINGS), ("schedule", c.schedule, SCHEDULES),
                                 ("screening", c.screening, SCREENING_RULES),
                                 ("accountant", c.accountant, TRAIN_ACCOUNTANTS)):
        if value not in choices:
            raise InvalidParameterError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    check_lr_schedule(c.lr_schedule)
    check_arch_options(str(c.arch), c.arch_kwargs)
    check_features(c.features)


def _check_numbers(c: TrainConfig) -> None:
    c.epochs = _positive_int("epochs", c.epochs)
    c.batch_size = _positive_int("batch size", c.batch_size)
    _positive_finite("clip", c.clip)
    _positive_finite("lr", c.lr)
    if c.momentum is None or not 0 <= c.momentum < 1:
        raise InvalidParameterError(f"momentum must be in [0, 1), got {c.momentum!r}")
    if not 0 < c.member_fraction <= 1:
        raise InvalidParameterError(f"member fraction must be in (0, 1], got {c.member_fraction!r}")
    if c.delta is None or not 0 < c.delta < 1:
        raise InvalidParameterError(f"delta must be in (0, 1), got {c.delta!r}")
    if c.noise_multiplier is not None:
        _positive_finite("noise multiplier", c.noise_multiplier)
    if c.epsilon is not None:
        _positive_finite("epsilon", c.epsilon)
    if c.ema_decay is not None and not 0.0 <= float(c.ema_decay) < 1.0:
        raise InvalidParameterError(f"EMA decay must be in [0, 1), got {c.ema_decay!r}")
    if c.threads is not None:
        _positive_int("threads", c.threads)
    if c.eval_size is not None:
        _positive_int("evaluation size", c.eval_size)
    if c.norm_sigma is not None:
        _positive_finite("normalisation noise multiplier", c.norm_sigma)
    if c.norm_clip is not None:
        if not isinstance(c.norm_clip, (tuple, list)) or len(c.norm_clip) != 2:
            raise InvalidParameterError(f"normalisation clip must be two numbers (C_m, C_s), got {c.norm_clip!r}")
        c.norm_clip = (_positive_finite("normalisation clip C_m", c.norm_clip[0]),
                       _positive_finite("normalisation clip C_s", c.norm_clip[1]))
    if not _is_whole(c.seed) or c.seed < 0:
        raise InvalidParameterError(f"seed must be a non-negative integer, got {c.seed!r}")


def _check_augmentation(c: TrainConfig) -> None:
    """A known augmentation; K a positive integer, K > 1 only with an augmentation; no
    augmentation of fixed features."""
    if c.augment is not None and c.augment not in ("none", *AUGMENTATIONS):
        raise InvalidParameterError(
            f"augmentation must be one of none, {', '.join(AUGMENTATIONS)}, got {c.augment!r}")
    c.augment_multiplicity = _positive_int("augmentation multiplicity", c.augment_multiplicity)
    if c.augment_multiplicity > 1 and c.augmentation() is None:
        raise InvalidParameterError(
            f"augmentation multiplicity {c.augment_multiplicity} needs an augmentation "
            f"({', '.join(AUGMENTATIONS)}): identical copies average to the plain gradient")
    if c.augmentation() is not None and c.features != "none":
        raise InvalidParameterError(
            f"augmentation {c.augment!r} transforms images, but this run trains on fixed "
            f"{c.features} features computed once from the unaugmented images")


def _check_screening(c: TrainConfig) -> None:
    if c.screening == "none":
        return
    if c.plan_path or c.schedule != "constant":
        raise InvalidParameterError("screening supports the constant schedule only (no saved plan)")
    c.screening_config()  # validates


def _is_whole(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and int(value) == value)


def _positive_int(name: str, value: Any) -> int:
    if not _is_whole(value) or value < 1:
        raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise InvalidParameterError(f"{name} must be a finite number > 0, got {value!r}")
    return v
