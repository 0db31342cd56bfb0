"""What an audited trainer must expose: its claim and its per-step release.

The audit never reads a trainer's source. It talks to a :class:`TrainerAdapter`:

* :meth:`TrainerAdapter.claim` -- the privacy claim (ε, δ) and the parameters it was derived
  from (sample rate q, noise multiplier σ, clip norm C, steps, batching, ...), as a
  :class:`Claim`.
* :meth:`TrainerAdapter.privatized_gradient` -- **the white-box step**: given a model, a batch
  and a loss, return the noisy update direction the optimizer would apply, flattened over the
  trainable parameters (for DP-SGD: ``(Σ_i clip_C(∇ℓ_i) + N(0, σ²C²I)) / B_expected``,
  Abadi et al. 2016, Alg. 1). The noise must be drawn from the ``generator`` argument (the
  audit seeds one generator per simulated training run); a trainer that ignores it is still
  audited, but the exact (noise-cancelling) probes become statistical or inconclusive.
* optional :meth:`sample_batches` (the trainer's own batch sampler, over dataset indices) and
  :meth:`per_sample_gradients` (its per-example gradient engine, unclipped);
* optional capability flag ``batched_canaries = True``: the step treats examples
  independently and adds isotropic noise, so the canary audits may simulate many runs as
  the coordinates of one instrument model (one call per step for thousands of runs;
  :mod:`dpaudit.audit.simulate`). Without it the audits run one simulated run at a time.

Loss convention (the reference trainer's): ``loss_fn(output, target)`` returns one loss per
example, shape ``(B,)`` (e.g. ``cross_entropy(..., reduction="none")``); the per-example
gradient of example i is ∇ loss_fn(model(x_i[None]), y_i[None]).sum(). The batch objective is
their mean (Opacus, ``loss_reduction="mean"``) or their sum (clipping engines).

Adapters shipped here: :class:`StepAdapter` (wrap plain callables -- the quickest way to put
a custom trainer under audit), :class:`ReferenceAdapter` (dpaudit's trainer) and
:class:`OpacusAdapter` (Opacus ``PrivacyEngine``; needs the ``opacus`` extra).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from dpaudit.audit.claim import Claim
from dpaudit.errors import InvalidParameterError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@runtime_checkable
class TrainerAdapter(Protocol):
    """The interface an audited trainer implements (see the module docstring).

    Only :meth:`claim` and :meth:`privatized_gradient` are required. Optional methods, looked
    up with ``getattr``: ``sample_batches(dataset_size, steps, seed) -> list[np.ndarray]``
    (index arrays into ``range(dataset_size)``) and ``per_sample_gradients(model, x, y,
    loss_fn) -> Tensor`` of shape ``(B, P)`` (unclipped, flattened). A probe that needs a
    missing method answers ``inconclusive``, never ``pass``.
    """

    name: str

    def claim(self) -> Claim: ...

    def privatized_gradient(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        loss_fn: LossFn,
        generator: torch.Generator,
        step: int = 0,
    ) -> torch.Tensor: ...


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-parameter tensors into one flat float64 CPU vector."""
    return torch.cat([t.detach().reshape(-1).to("cpu", torch.float64) for t in tensors])


def to_flat(update: Any) -> torch.Tensor:
    """Accept a flat tensor or a list of per-parameter tensors; return a flat float64 vector."""
    if isinstance(update, torch.Tensor):
        return update.detach().reshape(-1).to("cpu", torch.float64)
    if isinstance(update, (list, tuple)):
        return flat(update)
    raise InvalidParameterError(
        f"privatized_gradient must return a tensor or a list of tensors, got {type(update).__name__}"
    )


def optional_method(adapter: Any, name: str) -> Callable[..., Any] | None:
    """The adapter's optional method ``name`` (``sample_batches``, ``per_sample_gradients``)
    if it has a callable one, else None."""
    method = getattr(adapter, name, None)
    return method if callable(method) else None



# --------------------------------------------------------------------------- generic wrapper
@dataclass
class StepAdapter:
    """Wrap plain callables as a :class:`TrainerAdapter`.

    ``step_fn(model, x, y, *, loss_fn, generator, step, claim)`` returns the noisy update
    (flat tensor or list of per-parameter tensors). ``sampler(dataset_size, steps, seed)`` and
    ``per_sample_fn(model, x, y, loss_fn)`` are optional. ``batched=True`` opts in to the
    batched canary instrument (per-example clipping, isotropic noise). For process executors
    every callable must be picklable (module-level functions).
    """

    claimed: Claim
    step_fn: Callable[..., Any]
    sampler: Callable[[int, int, int], list[np.ndarray]] | None = None
    per_sample_fn: Callable[..., torch.Tensor] | None = None
    name: str = "custom"
    device: str = "cpu"
    batched: bool = False

    @property
    def batched_canaries(self) -> bool:
        """The ``batched`` opt-in (see the module docstring)."""
        return self.batched

    def claim(self) -> Claim:
        return self.claimed

    def privatized_gradient(self, model, x, y, *, loss_fn, generator, step=0):  # noqa: D401
        return to_flat(
            self.step_fn(model, x, y, loss_fn=loss_fn, generator=generator, step=step, claim=self.claimed)
        )

    def __getattr__(self, item: str) -> Any:
        # Expose optional methods only when the callables exist (so optional_method() is honest).
        if item == "sample_batches" and self.__dict__.get("sampler") is not None:
            return self.__dict__["sampler"]
        if item == "per_sample_gradients" and self.__dict__.get("per_sample_fn") is not None:
            return self.__dict__["per_sample_fn"]
        raise AttributeError(item)


# --------------------------------------------------------------------------- samplers
def poisson_batches(dataset_size: int, steps: int, sample_rate: float, seed: int) -> list[np.ndarray]:
    """Reference Poisson sampler: each index independently with prob. q at each step."""
    rng = np.random.default_rng(seed)
    return [np.flatnonzero(rng.random(dataset_size) < sample_rate) for _ in range(steps)]


def shuffle_batches(dataset_size: int, steps: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Reference shuffling: a fresh permutation per epoch cut into disjoint batches of
    ``batch_size`` (the last batch of an epoch may be smaller)."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < steps:
        perm = rng.permutation(dataset_size)
        for s in range(0, dataset_size, batch_size):
            out.append(perm[s : s + batch_size])
            if len(out) == steps:
                break
    return out


def balls_in_bins_batches(dataset_size: int, steps: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Reference balls-in-bins: each epoch puts every index into one of t = ceil(N/B) batches,
    uniformly and independently (sizes Multinomial(N, 1/t), possibly 0; every index exactly
    once per epoch)."""
    rng = np.random.default_rng(seed)
    t = -(-dataset_size // batch_size)
    out: list[np.ndarray] = []
    while len(out) < steps:
        bins = rng.integers(0, t, dataset_size)
        out.extend(np.flatnonzero(bins == j) for j in range(min(t, steps - len(out))))
    return out


# --------------------------------------------------------------------------- reference trainer
class ReferenceAdapter:
    """dpaudit's own trainer (``dpaudit.training.privatize.noisy_gradient`` and its samplers)
    on ``device`` (the audit places its models, batches and generators there)."""

    name = "reference"
    batched_canaries = True

    def __init__(self, claim: Claim, device: str = "cpu") -> None:
        self.claimed = claim
        self.device = device

    def claim(self) -> Claim:
        return self.claimed

    def privatized_gradient(self, model, x, y, *, loss_fn, generator, step=0):
        from dpaudit.training.privatize import noisy_gradient

        c = self.claimed
        return flat(
            noisy_gradient(
                model, x, y, clip=c.clip, noise_multiplier=c.noise_multiplier,
                expected_batch_size=c.expected_batch_size, generator=generator, loss_fn=loss_fn,
            )
        )

    def per_sample_gradients(self, model, x, y, loss_fn):
        from dpaudit.training.clipping import per_sample_grads

        grads = per_sample_grads(model, x, y, loss_fn=loss_fn)
        return torch.cat([g.reshape(g.shape[0], -1).to(torch.float64) for g in grads], dim=1)

    def sample_batches(self, dataset_size: int, steps: int, seed: int) -> list[np.ndarray]:
        from dpaudit.training import sampling

        c = self.claimed
        if c.batching == "poisson":
            ps = sampling.PoissonSampler(dataset_size, c.sample_rate, rng=seed)
            return [np.asarray(ps.sample(), dtype=np.int64) for _ in range(steps)]
        sh = sampling.make_sampler(c.batching, dataset_size, min(c.batch_size, dataset_size), rng=seed)
        out: list[np.ndarray] = []
        while len(out) < steps:
            out.extend(np.asarray(b, dtype=np.int64) for b in sh.epoch())
        return out[:steps]


# --------------------------------------------------------------------------- Opacus
class OpacusAdapter:
    """Opacus (``opacus.PrivacyEngine``, flat clipping, ``loss_reduction="mean"``).

    The audit's model is wrapped by ``PrivacyEngine.make_private`` once per model object and
    its weights are refreshed before every step; the released update is ``p.grad`` after the
    ``DPOptimizer.pre_step()`` (clip, add noise from the audit's generator, scale by the
    expected batch size). Sampling uses Opacus's ``UniformWithReplacementSampler`` (Poisson).
    """

    name = "opacus"
    batched_canaries = True

    def __init__(self, claim: Claim, device: str = "cpu") -> None:
        if claim.batching != "poisson":
            raise InvalidParameterError("the Opacus adapter audits Poisson sampling (Opacus's default)")
        self.claimed = claim
        self.device = device
        self._cache: dict[int, tuple[Any, Any, torch.nn.Module]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "device": self.device, "_cache": {}}

    def claim(self) -> Claim:
        return self.claimed

    def _wrapped(self, model: torch.nn.Module, generator: torch.Generator):
        from opacus import PrivacyEngine

        key = id(model)
        if key not in self._cache:
            c = self.claimed
            n = c.dataset_size
            bs = c.batch_size
            clone = copy.deepcopy(model)
            dummy = torch.utils.data.TensorDataset(torch.zeros(n, 1))
            loader = torch.utils.data.DataLoader(dummy, batch_size=bs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                engine = PrivacyEngine(accountant="rdp")
                gs_model, optimizer, _ = engine.make_private(
                    module=clone,
                    optimizer=torch.optim.SGD(clone.parameters(), lr=c.lr),
                    data_loader=loader,
                    noise_multiplier=c.noise_multiplier,
                    max_grad_norm=c.clip,
                    poisson_sampling=True,
                    noise_generator=generator,
                )
            optimizer.expected_batch_size = c.expected_batch_size
            self._cache = {key: (gs_model, optimizer, model)}
        return self._cache[key]

    @staticmethod
    def _backward(gs_model, optimizer, model, x, y, loss_fn) -> None:
        """Copy ``model``'s weights into Opacus's wrapped copy and backpropagate the mean
        loss (per-sample gradients land in ``grad_sample``)."""
        with torch.no_grad():
            for p_dst, p_src in zip(gs_model._module.parameters(), model.parameters()):
                p_dst.copy_(p_src)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(gs_model(x), y).mean()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss.backward()

    def privatized_gradient(self, model, x, y, *, loss_fn, generator, step=0):
        gs_model, optimizer, _ = self._wrapped(model, generator)
        optimizer.generator = generator
        self._backward(gs_model, optimizer, model, x, y, loss_fn)
        optimizer.pre_step()
        grads = [p.grad for p in gs_model._module.parameters() if p.requires_grad]
        out = flat(grads)
        optimizer.zero_grad(set_to_none=True)
        return out

    def per_sample_gradients(self, model, x, y, loss_fn):
        gs_model, optimizer, _ = self._wrapped(model, torch.Generator())
        self._backward(gs_model, optimizer, model, x, y, loss_fn)
        # Opacus scales grad_sample by the batch size for loss_reduction="mean".
        gs = [p.grad_sample for p in gs_model._module.parameters() if p.requires_grad]
        out = torch.cat([g.reshape(g.shape[0], -1).to(torch.float64) for g in gs], dim=1)
        optimizer.zero_grad(set_to_none=True)
        return out.detach()

    def sample_batches(self, dataset_size: int, steps: int, seed: int) -> list[np.ndarray]:
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        g = torch.Generator().manual_seed(int(seed))
        sampler = UniformWithReplacementSampler(
            num_samples=dataset_size, sample_rate=self.claimed.sample_rate, generator=g,
            steps=steps,
        )
        return [np.asarray(b, dtype=np.int64) for b in sampler]
