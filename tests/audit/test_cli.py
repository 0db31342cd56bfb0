"""``dpaudit audit`` end to end (in-process, inline executor)."""

from __future__ import annotations

import json

import pytest

from cli.main import main

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
])
def test_usage_errors_are_one_line(args, msg, capsys):
    code, _, err = run(args, capsys)
    assert code == 2
    assert err.startswith("dpaudit: error:") and msg in err and len(err.strip().splitlines()) == 1


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
