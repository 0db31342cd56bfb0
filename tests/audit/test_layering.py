"""Layering of the audit: it reads statistics from dpaudit.stats and never imports the
attacks package; its claim, check names and option checks import no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_audit_never_imports_attacks():
    offenders = {p.name: sorted(m for m in _imports(p) if m.startswith("dpaudit.attacks"))
                 for p in (ROOT / "dpaudit" / "audit").glob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_claim_and_checks_import_no_torch():
    code = (
        "import sys\n"
        "from dpaudit.audit import Claim, resolve_checks, check_options, parse_adapter_spec\n"
        "import dpaudit.stats, dpaudit.attacks.options, dpaudit.attacks.target, dpaudit.modelfile\n"
        "Claim.create(noise_multiplier=1.0, steps=20, sample_rate=0.1, dataset_size=100)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
