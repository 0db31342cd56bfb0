"""Simulating canary runs: many runs (or canaries) per trainer call, and the per-run loop.

**Batched instrument** (adapters that opt in with ``batched_canaries = True``): the runs of
an audit become the coordinates of one :class:`~dpaudit.audit.probe_model.LinearProbe`.
Coordinate j belongs to run j (multi-run audit) or canary j (one-run audit); at step t its
Dirac canary ``C e_j`` is in the batch when the *claimed* sampler includes it (one function
per batching, :data:`PRESENCE`), and zero-gradient fillers complete the batch. One trainer
call per step then simulates every run at once.

Why this is exact under the claim (the null hypothesis): DP-SGD clips each example
separately (a Dirac of norm C is left as it is), sums, adds isotropic noise
``N(0, sigma^2 C^2 I)`` independent of everything else and divides by the public B. So
coordinate j of the update is ``(C 1[canary j in batch t] + sigma C Z_{t,j}) / B`` with
independent standard normals Z, and the inclusions are independent across j -- exactly the
law of independent single-canary runs. A trainer that breaks this (noise correlated across
coordinates, clipping across examples, inclusion not Poisson) is not the claimed mechanism;
the audit's statistics keep their level under the claim, which is all a test of the claim
needs, and the cheap probes look for those bugs directly. Runs are cut into chunks of at
most :data:`CHUNK` coordinates (memory); chunks use independent generators.

The claimed sampler is simulated here (the sampler probe checks the trainer's own): Poisson
-- each canary in each step with probability q independently; shuffle -- one uniformly
random position per epoch in a fresh permutation of the N examples (batch ``pos // B``);
balls-in-bins -- one uniformly random batch of the t = ceil(N/B) of each epoch, independently
per canary. A later batching adds one function to :data:`PRESENCE`.

**Per-run loop** (every other adapter): one :class:`LinearProbe` of dimension 2 per run,
the trainer's own sampler when it has one (:func:`run_batches`), runs spread over the
executor's workers.

Both return, besides the scores, the canary's measured effect on the released update
(:class:`Effect`): under the claim a present canary moves its coordinate by exactly C/B, so
an effect far below that means the audit's gradients never reach the trainer (it ignores the
given ``loss_fn`` or batch), and a "pass" would be blind.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dpaudit.audit.adapter import (
    TrainerAdapter,
    balls_in_bins_batches,
    optional_method,
    poisson_batches,
    shuffle_batches,
    to_flat,
)
from dpaudit.audit.claim import Claim
from dpaudit.audit.probe_model import LinearProbe, device_of, linear_loss, run_generator

#: Coordinates per batched trainer call (memory: rows x CHUNK floats per step).
CHUNK = 2048
#: Most zero-gradient fillers added to a batched step (they change nothing under the claim).
MAX_FILLERS = 64
#: Use the trainer's own sampler in the per-run loop while ``dataset_size * steps`` stays
#: below this (cost).
SAMPLER_BUDGET = 20_000_000

Progress = Callable[[int, int], None]


def supports_batched(adapter: object) -> bool:
    """True when the adapter opted in to the batched instrument (``batched_canaries``)."""
    return getattr(adapter, "batched_canaries", False) is True


# --------------------------------------------------------------------------- samplers
def _poisson_presence(claim: Claim, coords: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((steps, coords)) < claim.sample_rate


def _shuffle_presence(claim: Claim, coords: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    n, b = claim.dataset_size, claim.batch_size
    spe = math.ceil(n / b)
    out = np.zeros((steps, coords), dtype=bool)
    cols = np.arange(coords)
    for start in range(0, steps, spe):
        t = start + rng.integers(0, n, coords) // b
        ok = t < steps
        out[t[ok], cols[ok]] = True
    return out


def _balls_in_bins_presence(claim: Claim, coords: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    n, b = claim.dataset_size, min(claim.batch_size, claim.dataset_size)
    t = math.ceil(n / b)
    out = np.zeros((steps, coords), dtype=bool)
    cols = np.arange(coords)
    for start in range(0, steps, t):
        s = start + rng.integers(0, t, coords)
        ok = s < steps
        out[s[ok], cols[ok]] = True
    return out


#: Claimed sampler per batching: ``(claim, coords, steps, rng) -> bool array (steps,
#: coords)``, True where the canary of that coordinate is in that step's batch.
PRESENCE: dict[str, Callable[[Claim, int, int, np.random.Generator], np.ndarray]] = {
    "poisson": _poisson_presence,
    "shuffle": _shuffle_presence,
    "balls_in_bins": _balls_in_bins_presence,
}


def presence(claim: Claim, coords: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    return PRESENCE[claim.batching](claim, coords, steps, rng)


# --------------------------------------------------------------------------- scores
def llr(obs: np.ndarray, sample_rate: float, noise_multiplier: float) -> np.ndarray:
    """Per-observation log-likelihood ratio of ``(1-q)N(0,σ²) + qN(1,σ²)`` to ``N(0,σ²)``
    (the claimed mechanism's privacy loss of one step, observation in units of C/B)."""
    z = (2.0 * np.asarray(obs, dtype=np.float64) - 1.0) / (2.0 * noise_multiplier**2)
    if sample_rate >= 1.0:
        return z
    return np.logaddexp(math.log1p(-sample_rate), math.log(sample_rate) + z)


@dataclass(frozen=True)
class Effect:
    """Sums of the observations (units of C/B) at steps where a canary was present and
    where it was not, to measure the canary's effect on its coordinate (1 under the claim)."""

    s1: float = 0.0
    ss1: float = 0.0
    n1: int = 0
    s0: float = 0.0
    ss0: float = 0.0
    n0: int = 0

    @classmethod
    def of(cls, obs: np.ndarray, present: np.ndarray) -> Effect:
        a, b = obs[present], obs[~present]
        return cls(float(a.sum()), float((a * a).sum()), int(a.size), float(b.sum()), float((b * b).sum()),
                   int(b.size))

    def __add__(self, other: Effect) -> Effect:
        return Effect(self.s1 + other.s1, self.ss1 + other.ss1, self.n1 + other.n1,
                      self.s0 + other.s0, self.ss0 + other.ss0, self.n0 + other.n0)

    def estimate(self) -> tuple[float, float]:
        """(mean difference present - absent, its standard error); nan when a group is empty.
        Paired differences (:func:`reach_effect`) are stored in the first group with an
        all-zero second group."""
        if self.n1 < 2 or self.n0 < 2:
            return math.nan, math.nan
        m1, m0 = self.s1 / self.n1, self.s0 / self.n0
        v1 = max(self.ss1 / self.n1 - m1 * m1, 0.0)
        v0 = max(self.ss0 / self.n0 - m0 * m0, 0.0)
        return m1 - m0, math.sqrt(v1 / self.n1 + v0 / self.n0)


def reach_effect(adapter: TrainerAdapter, claim: Claim, seed: int = 99, pairs: int = 256) -> Effect:
    """The canary's effect measured directly: pairs of calls on a 2-coordinate probe, the
    Dirac canary on coordinate 0 in one and on coordinate 1 in the other (same batch size,
    same generator seed: the noise cancels for a trainer that draws it from the audit's
    generator). Under the claim coordinate 0 differs by exactly 1 (units of C/B); a trainer
    that ignores the batch's content or the given loss_fn shows 0."""
    dev = device_of(adapter)
    model = LinearProbe(2).to(dev)
    b = max(1, min(MAX_FILLERS, round(claim.expected_batch_size)))
    scale = claim.expected_batch_size / claim.clip
    x1 = torch.cat([torch.zeros(b, 2), torch.tensor([[float(claim.clip), 0.0]])])
    x0 = torch.cat([torch.zeros(b, 2), torch.tensor([[0.0, float(claim.clip)]])])
    y0 = y1 = torch.zeros(b + 1, dtype=torch.long)

    def call(x: torch.Tensor, y: torch.Tensor, s: int) -> float:
        gen = run_generator(s, dev)
        u = to_flat(adapter.privatized_gradient(model, x.to(dev), y.to(dev), loss_fn=linear_loss, generator=gen, step=0))
        return float(u[0]) * scale

    diffs = []
    for k in range(pairs):
        d = call(x1, y1, seed + k) - call(x0, y0, seed + k)
        diffs.append(d)
        if k == 1 and abs(diffs[0] - diffs[1]) <= 1e-9 * (1.0 + abs(diffs[0])):
            break  # deterministic given the generator: two pairs say it all
    arr = np.array(diffs)
    return Effect(float(arr.sum()), float((arr * arr).sum()), arr.size, 0.0, 0.0, arr.size)


def not_reached(effect: Effect) -> str | None:
    """A sentence when the canaries' measured effect is far below the claimed C/B (their
    gradients did not reach the released update), else None."""
    d, se = effect.estimate()
    if not math.isfinite(d) or d + 4.0 * se >= 0.5:
        return None
    return (f"the canaries moved the released update by {d:.3g} ± {se:.2g} C/B instead of 1 C/B: the audit's "
            "gradients do not reach the trainer (it ignores the given loss_fn or batch?), so this audit is blind")


# --------------------------------------------------------------------------- batched
def observe_chunk(adapter: TrainerAdapter, claim: Claim, present: np.ndarray, seed: int) -> np.ndarray:
    """Run the trainer's step once per row of ``present`` (steps x coords) on a
    LinearProbe with one coordinate per column; returns the coordinates' updates in units
    of C/B (steps x coords)."""
    steps, coords = present.shape
    dev = device_of(adapter)
    gen = run_generator(seed, dev)
    model = LinearProbe(coords).to(dev)
    scale = claim.expected_batch_size / claim.clip
    b = max(1, round(claim.expected_batch_size))
    obs = np.empty((steps, coords))
    for t in range(steps):
        idx = np.flatnonzero(present[t])
        fillers = max(1, min(MAX_FILLERS, b - idx.size))
        x = torch.zeros(idx.size + fillers, coords)
        if idx.size:
            x[torch.arange(idx.size), torch.as_tensor(idx)] = float(claim.clip)
        y = torch.zeros(x.shape[0], dtype=torch.long)
        u = to_flat(adapter.privatized_gradient(model, x.to(dev), y.to(dev), loss_fn=linear_loss,
                                                generator=gen, step=t))
        obs[t] = u[:coords].numpy() * scale
    return obs


def chunk_sizes(total: int, chunk: int = CHUNK) -> list[int]:
    parts = max(1, math.ceil(total / chunk))
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def batched_multi_run(adapter: TrainerAdapter, claim: Claim, runs: int, steps: int, seed: int,
                      progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, Effect]:
    """``runs`` runs per world on the batched instrument; returns (scores with the canary,
    scores without, measured effect)."""
    rng = np.random.default_rng([seed, 0x6D75])
    s_in: list[np.ndarray] = []
    s_out: list[np.ndarray] = []
    effect = Effect()
    sizes = chunk_sizes(runs, CHUNK // 2)
    for c, n in enumerate(sizes):
        present = np.zeros((steps, 2 * n), dtype=bool)
        present[:, :n] = presence(claim, n, steps, rng)
        obs = observe_chunk(adapter, claim, present, int(rng.integers(2**62)))
        sc = llr(obs, claim.sample_rate, claim.noise_multiplier).sum(axis=0)
        s_in.append(sc[:n])
        s_out.append(sc[n:])
        effect = effect + Effect.of(obs[:, :n], present[:, :n])
        if progress is not None:
            progress(c + 1, len(sizes))
    return np.concatenate(s_in), np.concatenate(s_out), effect


def batched_one_run(adapter: TrainerAdapter, claim: Claim, canaries: int, steps: int, seed: int,
                    progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray, Effect]:
    """``canaries`` canaries, each in the data set with probability 1/2, on the batched
    instrument (chunks are independent runs: the concatenation is one mechanism that is
    f-DP in every canary whenever each run is); returns (scores, included, effect)."""
    rng = np.random.default_rng([seed, 0x6F6E])
    included = rng.random(canaries) < 0.5
    scores = np.empty(canaries)
    effect = Effect()
    start = 0
    sizes = chunk_sizes(canaries)
    for c, n in enumerate(sizes):
        inc = included[start:start + n]
        present = presence(claim, n, steps, rng) & inc[None, :]
        obs = observe_chunk(adapter, claim, present, int(rng.integers(2**62)))
        scores[start:start + n] = llr(obs, claim.sample_rate, claim.noise_multiplier).sum(axis=0)
        effect = effect + Effect.of(obs[:, inc], present[:, inc])
        start += n
        if progress is not None:
            progress(c + 1, len(sizes))
    return scores, included, effect


# --------------------------------------------------------------------------- per-run loop
def run_batches(adapter: TrainerAdapter, claim: Claim, n: int, steps: int, seed: int) -> tuple[list[np.ndarray], bool]:
    """The trainer's batches if it has a sampler and the cost is moderate, else the claimed
    sampler simulated here. Returns ``(batches, used_trainer_sampler)``."""
    sampler = optional_method(adapter, "sample_batches")
    if sampler is not None and n * steps <= SAMPLER_BUDGET:
        return [np.asarray(b, dtype=np.int64).reshape(-1) for b in sampler(n, steps, seed)][:steps], True
    if claim.batching == "poisson":
        return poisson_batches(n, steps, claim.sample_rate, seed), False
    if claim.batching == "balls_in_bins":
        return balls_in_bins_batches(n, steps, min(claim.batch_size, n), seed), False
    return shuffle_batches(n, steps, claim.batch_size, seed), False
