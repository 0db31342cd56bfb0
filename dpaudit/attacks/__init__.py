"""Privacy attacks on trained models and the statistics to read them.

* :mod:`dpaudit.stats` — pure numpy/scipy (no torch): Clopper-Pearson intervals,
  empirical epsilon lower bounds with valid threshold selection, ROC metrics, DP caps.
  The audit package reuses it.
* :mod:`dpaudit.attacks.membership` — loss-threshold attack (Yeom et al. 2018) and the
  logit-scaled confidence of Carlini et al. 2022.
* :mod:`dpaudit.attacks.lira` — the likelihood-ratio attack (LiRA) with shadow models.
* :mod:`dpaudit.attacks.shadows` — LiRA's shadow models: the target's recipe, the population,
  query augmentations, training through an executor.
* :mod:`dpaudit.attacks.inversion` — MI-FACE model inversion (Fredrikson et al. 2015).
* :mod:`dpaudit.attacks.target` — loading the attacked model safely (weights-only / TorchScript)
  with its member and non-member data.
* :mod:`dpaudit.attacks.report` — running the attacks on a target and writing reports.

Importing this package imports nothing heavy; import the submodule you need.
"""
