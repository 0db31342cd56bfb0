"""``dpaudit audit`` end to end (in-process, inline executor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]

CLAIM = ["--noise-multiplier", "1.0", "--sample-rate", "0.1", "--dataset-size", "100", "--steps", "20"]


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["audit", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_reference_probes_pass_with_json_and_report(tmp_path, capsys):
    code, out, _ = run([*CLAIM, "--checks", "probes", "--executor", "inline", "--json",
                        "--report", str(tmp_path / "r")], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["verdict"] == "pass" and len(d["checks"]) == 6
    assert d["claim"]["epsilon"] == pytest.approx(3.59, abs=0.01)  # PLD figure of the parameters
    assert json.loads((tmp_path / "r" / "report.json").read_text())["verdict"] == "pass"
    assert "| check | verdict |" in (tmp_path / "r" / "report.md").read_text()


def test_under_claimed_epsilon_exits_1(capsys):
    code, out, _ = run([*CLAIM, "--epsilon", "1.0", "--checks", "accounting"], capsys)
    assert code == 1 and "VIOLATION" in out


def test_custom_trainer_module_function(capsys):
    code, out, _ = run(["--trainer", "tests.audit.planted:half_sigma_trainer", "--checks", "noise_variance"], capsys)
    assert code == 1 and "too little noise" in out


@pytest.mark.parametrize("args, msg", [
    (["--checks", "bogus", *CLAIM], "unknown check"),
    (["--sample-rate", "0.1", "--steps", "3"], "--noise-multiplier"),
    ([*CLAIM, "--confidence", "1.5", "--checks", "sampler"], "confidence"),
    (["--trainer", "no_such_module:f"], "cannot load trainer"),
    (["--trainer", "tests.audit.planted:BUGS"], "not callable"),
    (["--trainer", "no_colon"], "module:function"),
    (["--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "20"], "--dataset-size"),
    ([*CLAIM, "--runs", "0"], "at least 1 run"),
    ([*CLAIM, "--canaries", "1"], "at least 2 canaries"),
    ([*CLAIM, "--canary-steps", "0"], "canary steps"),
    ([*CLAIM, "--delta", "2"], "delta must be in (0, 1)"),
    ([*CLAIM, "--builtin", "opacus", "--trainer", "a:b"], "give one of"),
    ([*CLAIM, "--device", "nonsense"], "unknown device"),
    ([*CLAIM, "--report", "/proc/audit-report"], "does not accept new files"),
    ([*CLAIM, "--confidence", "0.4", "--checks", "sampler"], "unsafe"),
])
def test_usage_errors_are_one_line(args, msg, capsys):
    code, out, err = run(args, capsys)
    assert code == 2 and out == ""
    assert err.startswith("dpaudit: error:") and msg in err and len(err.strip().splitlines()) == 1, err


def test_bad_values_refused_before_torch():
    """The claim, the checks, the counts and the report folder are checked before torch is
    imported (it takes seconds), so bad values are refused at once."""
    cases = [
        ["audit", "--checks", "bogus", *CLAIM],
        ["audit", *CLAIM, "--confidence", "1.5"],
        ["audit", "--sample-rate", "0.1", "--steps", "3"],
        ["audit", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "20"],
        ["audit", *CLAIM, "--runs", "0"],
        ["audit", "--trainer", "no_colon"],
        ["audit", *CLAIM, "--report", "/proc/audit-report"],
    ]
    code = (
        "import sys\nfrom cli.main import main\n"
        f"for argv in {cases!r}:\n"
        "    try:\n        main(argv)\n    except SystemExit as exc:\n        assert exc.code == 2, argv\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("dpaudit: error:") == len(cases)


def test_text_and_markdown_print_the_whole_claim(tmp_path, capsys):
    code, out, _ = run([*CLAIM, "--epsilon", "4", "--checks", "accounting", "--report", str(tmp_path / "r")], capsys)
    assert code == 0
    whole = "eps=4 delta=1e-05 N=100 B=10 q=0.1 sigma=1 C=1 T=20 batching=poisson"
    assert f"claim: {whole}" in out
    assert f"Claim: {whole}" in (tmp_path / "r" / "report.md").read_text()


def test_report_write_is_all_or_nothing(tmp_path, monkeypatch):
    from dpaudit.audit import AuditReport, CheckResult, Claim
    from dpaudit.errors import OutputError

    claim = Claim.create(noise_multiplier=1.0, steps=20, sample_rate=0.1, dataset_size=100)
    rep = AuditReport("t", claim.to_dict(), (CheckResult("accounting", "pass", "ok"),), 0.95)

    def broken(self):
        raise RuntimeError("markdown failed")

    monkeypatch.setattr(AuditReport, "to_markdown", broken)
    with pytest.raises(RuntimeError):
        rep.write(tmp_path / "r")
    assert not (tmp_path / "r").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        rep.write(tmp_path / "f")


def _ledger_metadata(sigmas=(1.0,)):
    from dpaudit.training.ledger import PrivacyLedger

    led = PrivacyLedger(100, 10, "poisson")
    for s in sigmas:
        led.record_epoch(s, 1.0)
    return {"private": True, "epsilon": 5.0, "delta": 1e-5, "clip": 1.0, "ledger": led.to_dict(),
            "arch": "logreg", "arch_kwargs": {}, "input_shape": [1, 8, 8], "num_classes": 10}


def test_claim_from_model_metadata():
    from dpaudit.audit import Claim
    from dpaudit.errors import InvalidParameterError, OutOfValidityError

    c = Claim.from_metadata(_ledger_metadata((1.0, 1.0)))
    assert (c.sample_rate, c.noise_multiplier, c.steps, c.dataset_size, c.expected_batch_size) == (0.1, 1.0, 20, 100, 10.0)
    with pytest.raises(OutOfValidityError):
        Claim.from_metadata(_ledger_metadata((1.0, 2.0)))
    with pytest.raises(InvalidParameterError):
        Claim.from_metadata({"private": False, "ledger": None})


def test_audit_a_trained_model_file(tmp_path, capsys):
    from dpaudit.training.checkpoint import save_model
    from dpaudit.training.models import build_model

    md = _ledger_metadata((1.0, 1.0))
    model = build_model("logreg", (1, 8, 8), 10)
    save_model(tmp_path / "m.pt", model, md)
    code, out, _ = run(["--model", str(tmp_path / "m.pt"), "--checks", "accounting,noise_variance", "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["verdict"] == "pass" and d["claim"]["steps"] == 20
    md["epsilon"] = 1.0  # an under-reported claim in the file
    save_model(tmp_path / "m2.pt", model, md)
    code, _, _ = run(["--model", str(tmp_path / "m2.pt"), "--checks", "accounting"], capsys)
    assert code == 1


class _Evil:
    def __reduce__(self):
        return (os.mkdir, ("PWNED_DIR",))


def _bad_model_files(tmp_path):
    torch = pytest.importorskip("torch")
    from dpaudit.training.models import build_model

    evil = tmp_path / "evil.pt"
    torch.save({"format": "dpaudit-model/1", "payload": _Evil()}, evil)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage that is not a model")
    sd = tmp_path / "sd.pt"
    torch.save(build_model("logreg", (1, 8, 8), 10).state_dict(), sd)
    return {"evil": evil, "garbage": garbage, "state_dict": sd}


@pytest.mark.parametrize("kind, msg", [
    ("evil", "not a plain tensor/weights file (it needs arbitrary unpickling); it was refused unread"),
    ("garbage", "corrupt or not a PyTorch model file"),
    ("state_dict", "is not a dpaudit model file"),
])
def test_bad_model_file_same_message_as_attack(tmp_path, monkeypatch, capsys, kind, msg):
    """One loader: `audit --model` and `attack` refuse a bad file with the same words, and
    never repeat torch's advice to load it with weights_only=False."""
    monkeypatch.chdir(tmp_path)
    path = _bad_model_files(tmp_path)[kind]
    code, out, err = run(["--model", str(path), "--checks", "accounting"], capsys)
    assert code == 2 and out == "" and msg in err and len(err.strip().splitlines()) == 1, err
    assert "weights_only" not in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["attack", str(path)])
    attack_err = capsys.readouterr().err
    assert exc.value.code == 2 and attack_err.startswith(err.strip())  # attack may add flag hints
    assert not (tmp_path / "PWNED_DIR").exists()


def test_report_folder_has_the_tradeoff_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, out, _ = run([*CLAIM, "--checks", "canary_multi_run", "--runs", "300", "--json", "--report",
                        str(tmp_path / "r")], capsys)
    assert code == 0
    d = json.loads(out)
    det = d["checks"][0]["details"]
    assert det["method"] == "fdp-multi-run" and "epsilon_lower_bound" in det and "p_value" in det
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["report.json", "report.md", "tradeoff.png"]
