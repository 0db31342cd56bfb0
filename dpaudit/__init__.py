"""dpaudit: plan, account and audit differentially private training.

Layers (bottom to top): ``dpaudit.accounting`` and ``dpaudit.allocation`` are pure
numpy/scipy math and never import torch; ``dpaudit.training``, ``dpaudit.attacks`` and
``dpaudit.audit`` use torch; the ``cli`` package is a thin click layer over all of them.
"""

__version__ = "0.1.0"
