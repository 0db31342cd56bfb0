"""`dpaudit attack`: JSON keys, report files, third-party models, untrusted-file refusal."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, digits):
    from dpaudit.training import TrainConfig, save_model, train

    cfg = TrainConfig(arch="logreg", no_privacy=True, epochs=5, batch_size=32, lr=0.5,
                      member_fraction=0.5, threads=1)
    res = train(cfg, dataset=digits, progress=False)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, res.model, res.metadata)
    return path, res


def _run(argv, capsys):
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_keys_and_report(model_file, tmp_path, capsys):
    path, _ = model_file
    rep = tmp_path / "rep"
    code, out, err = _run(
        ["attack", path, "--json", "--inversion-iters", "30", "--report", rep], capsys
    )
    assert code == 0, err
    d = json.loads(out)
    m = d["membership"]
    for key in ("auc", "tpr_at_fpr", "epsilon_lower_bound", "claimed_epsilon", "verdict"):
        assert key in m
    assert set(m["tpr_at_fpr"]) == {"0.1", "0.01", "0.001"}
    assert m["claimed_epsilon"] is None and m["verdict"] == "no-claim"
    assert abs(m["n_members"] - m["n_nonmembers"]) <= 1  # member_fraction 0.5
    for key in ("eval_accuracy", "baseline_eval_accuracy", "raw_eval_accuracy", "eval_classifier_confusion",
                "verdict", "mse", "ssim"):
        assert key in d["inversion"]
    inv = d["inversion"]
    assert inv["eval_accuracy"] == pytest.approx(np.mean(inv["per_class"]["recognised"]))
    assert inv["eval_accuracy"] <= inv["raw_eval_accuracy"]
    for name in ("report.json", "roc.png", "inversion.png", "report.md"):
        assert (rep / name).stat().st_size > 0
    md = (rep / "report.md").read_text()
    assert md.count("**Verdict:**") == 2 and "where it comes from:" in md
    assert json.loads((rep / "report.json").read_text())["membership"]["auc"] == m["auc"]
    assert not [p for p in rep.iterdir() if p.name.startswith(".")]  # no temp files left


def test_all_attacks_split_confidence(model_file, capsys):
    code, out, err = _run(
        ["attack", model_file[0], "--attack", "all", "-k", "2", "--workers", "1",
         "--inversion-iters", "20", "--json", "--confidence", "0.9"],
        capsys,
    )
    assert code == 0, err
    m = json.loads(out)["membership"]
    assert set(m["attacks"]) == {"loss", "lira_online", "lira_offline"}
    assert m["confidence"] == 0.9
    for a in m["attacks"].values():
        assert a["confidence"] == pytest.approx(1 - 0.1 / 3)  # Bonferroni over the 3 tests
    assert m["epsilon_lower_bound"] == max(a["epsilon_lower_bound"] for a in m["attacks"].values())
    code, _, err = _run(["attack", model_file[0], "--attack", "lira", "-k", "1"], capsys)
    assert code == 2 and "at least 2 shadow models" in err


def test_text_output_loss_only(model_file, capsys):
    code, out, err = _run(["attack", model_file[0], "--attack", "loss"], capsys)
    assert code == 0, err
    assert "verdict: no-claim" in out and "inversion" not in out
    assert "membership inference: eps_lb" in out and "headline loss:" in out


def test_inversion_json_interface(model_file, capsys):
    code, out, err = _run(["attack", model_file[0], "--attack", "inversion", "--inversion-iters", "30",
                           "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["membership"] is None
    inv = d["inversion"]
    assert 0 <= inv["eval_accuracy"] <= 1 and 0 <= inv["baseline_eval_accuracy"] <= 0.1 + 1e-12
    assert len(inv["eval_classifier_confusion"]) == 10
    # the interface's meaning, from the JSON alone: a class counts only if the independent
    # classifier reads its label AND the image is not near-constant (contrast >= min_contrast)
    pc = inv["per_class"]
    honest = [p == c and s >= inv["min_contrast"] for c, (p, s) in enumerate(zip(pc["predicted"], pc["contrast"]))]
    assert pc["recognised"] == honest
    assert inv["eval_accuracy"] == pytest.approx(np.mean(honest))
    assert inv["raw_eval_accuracy"] == pytest.approx(np.mean([p == c for c, p in enumerate(pc["predicted"])]))
    # baseline: the blank and the mean image, each offered as every class's reconstruction
    base = inv["baseline_predictions"]
    assert set(base) == {"blank", "mean"}
    assert inv["baseline_eval_accuracy"] == pytest.approx(len(base) / (len(base) * 10))


def test_inversion_cost_is_the_one_run_and_recorded(model_file, capsys, monkeypatch):
    import dpaudit.attacks.inversion as inv_mod

    seen = []
    real = inv_mod.mi_face

    def spy(model, labels, input_shape, config, device="cpu"):
        seen.append(config.cost)
        return real(model, labels, input_shape, config, device)

    monkeypatch.setattr(inv_mod, "mi_face", spy)
    for flag, name in ((None, "logit"), ("log-prob", "log_prob"), ("paper", "paper")):
        extra = [] if flag is None else ["--inversion-cost", flag]
        code, out, err = _run(["attack", model_file[0], "--attack", "inversion", "--inversion-iters", "5",
                               *extra, "--json"], capsys)
        assert code == 0, err
        assert json.loads(out)["inversion"]["config"]["cost"] == name and seen[-1] == name


def test_blank_reconstruction_never_counts(model_file, capsys, monkeypatch):
    """An attack that returns blank images gets eval_accuracy 0 even where the classifier
    reads the blank as some class (raw accuracy 1/10), through the CLI's JSON."""
    import dpaudit.attacks.inversion as inv_mod

    def blank(model, labels, input_shape, config, device="cpu"):
        n = len(labels)
        return (np.zeros((n, *input_shape), np.float32), np.zeros(n), np.ones(n, np.int64), ["max_iter"] * n)

    monkeypatch.setattr(inv_mod, "mi_face", blank)
    code, out, err = _run(["attack", model_file[0], "--attack", "inversion", "--json"], capsys)
    assert code == 0, err
    inv = json.loads(out)["inversion"]
    assert inv["raw_eval_accuracy"] == pytest.approx(0.1)  # the blank image is read as one class
    assert inv["eval_accuracy"] == 0 and inv["recognised_classes"] == 0
    assert inv["verdict"] == "nothing recognisable"


class _Evil:
    def __reduce__(self):
        return (os.mkdir, ("PWNED_DIR",))


def test_refuses_arbitrary_unpickling(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    torch.save({"format": "dpaudit-model/1", "payload": _Evil()}, bad)
    code, out, err = _run(["attack", bad], capsys)
    assert code == 2
    assert err.startswith("dpaudit: error: refusing to load") and "arbitrary unpickling" in err
    assert "not a plain tensor/weights file" in err and "weights_only" not in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "PWNED_DIR").exists()  # nothing in the file ran


@pytest.mark.parametrize(
    "content", [b"", b"garbage that is not a model", pickle.dumps([1, 2], protocol=2)],
    ids=["empty", "garbage", "plain-pickle"],
)
def test_corrupt_and_missing_files(tmp_path, capsys, content):
    f = tmp_path / "m.pt"
    f.write_bytes(content)
    code, _, err = _run(["attack", f], capsys)
    assert code == 2 and err.startswith("dpaudit: error:") and len(err.strip().splitlines()) == 1
    code, _, err = _run(["attack", tmp_path / "nope.pt"], capsys)
    assert code == 2 and "file not found" in err


def _npz(tmp_path, digits, idx, name):
    p = tmp_path / name
    np.savez(p, x=digits.x_train[idx], y=digits.y_train[idx])
    return p


def test_third_party_state_dict_and_torchscript(model_file, digits, tmp_path, capsys):
    path, res = model_file
    split = res.metadata["split"]
    mem = _npz(tmp_path, digits, split["member_indices"][:100], "mem.npz")
    non = _npz(tmp_path, digits, split["nonmember_indices"][:100], "non.npz")
    sd = tmp_path / "sd.pt"
    torch.save(res.model.state_dict(), sd)
    code, out, err = _run(
        ["attack", sd, "--members", mem, "--non-members", non, "--arch", "logreg",
         "--attack", "loss", "--json", "--claimed-epsilon", "1.0", "--claimed-delta", "1e-5"],
        capsys,
    )
    assert code == 0, err
    d = json.loads(out)["membership"]
    assert d["claimed_epsilon"] == 1.0 and d["verdict"] in ("consistent", "violation")
    assert d["n_members"] == 100
    ts = tmp_path / "ts.pt"
    torch.jit.trace(res.model, torch.zeros(1, 1, 8, 8)).save(str(ts))
    code2, out2, err2 = _run(
        ["attack", ts, "--members", mem, "--non-members", non, "--attack", "loss", "--json"],
        capsys,
    )
    assert code2 == 0, err2
    assert json.loads(out2)["membership"]["auc"] == pytest.approx(d["auc"], abs=1e-6)
    # wrong architecture -> one readable line
    code3, _, err3 = _run(
        ["attack", sd, "--members", mem, "--non-members", non, "--arch", "mlp"], capsys
    )
    assert code3 == 2 and "do not fit architecture mlp" in err3
    code4, _, err4 = _run(["attack", sd, "--members", mem], capsys)
    assert code4 == 2 and "--non-members" in err4
    code5, _, err5 = _run(["attack", sd, "--members", mem, "--non-members", non], capsys)
    assert code5 == 2 and "the architecture is needed" in err5
    code6, _, err6 = _run(["attack", sd], capsys)  # a bare state_dict without data
    assert code6 == 2 and "not a dpaudit model file" in err6 and "--members" in err6
    code7, _, err7 = _run(["attack", sd, "--members", mem, "--non-members", non, "--arch", "resnet"], capsys)
    assert code7 == 2 and "unknown architecture 'resnet'" in err7


def test_unavailable_device(model_file, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    code, _, err = _run(["attack", model_file[0], "--device", "cuda"], capsys)
    assert code == 2 and "CUDA is not available" in err


def test_dp_model_file_verdict(digits, tmp_path, capsys):
    from dpaudit.training import TrainConfig, save_model, train

    cfg = TrainConfig(arch="logreg", epsilon=1.0, epochs=3, batch_size=64, member_fraction=0.5,
                      threads=1, seed=5)
    res = train(cfg, dataset=digits, progress=False)
    path = tmp_path / "dp.pt"
    save_model(path, res.model, res.metadata)
    code, out, err = _run(["attack", path, "--attack", "loss", "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)["membership"]
    assert m["claimed_epsilon"] == pytest.approx(res.metadata["epsilon"])
    assert m["claimed_delta"] == res.metadata["delta"]
    assert m["verdict"] == "consistent" and m["epsilon_lower_bound"] <= m["claimed_epsilon"]
    assert m["caps"]["auc"] >= m["auc"]


def test_model_file_is_read_once(model_file, monkeypatch):
    """One weights-only read per attack (the file used to be loaded twice)."""
    from dpaudit.attacks.target import target_from_model_file

    calls = []
    real = torch.load

    def counting_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    target = target_from_model_file(model_file[0])
    assert calls == [True]
    assert target.claimed_epsilon is None and len(target.members[0]) > 0


@pytest.mark.parametrize("argv, msg", [
    (["--confidence", "1.5"], "confidence must be in (0, 1)"),
    (["--attack", "lira", "-k", "1"], "at least 2 shadow models"),
    (["--inversion-iters", "0"], "max_iter and patience must be >= 1"),
    (["--inversion-cost", "hinge"], "'hinge' is not one of"),
    (["--members", "m.npz"], "--non-members"),
    (["--arch", "cnn"], "for third-party models"),
    (["--claimed-epsilon", "1"], "for third-party models"),
    (["--data-dir", "no-such-folder"], "does not exist"),
    (["--report", "a-file.txt"], "is a file"),
    (["--report", "/proc/attack-report"], "does not accept new files"),
])
def test_bad_input_refused_before_work(model_file, tmp_path, monkeypatch, capsys, argv, msg):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file.txt").write_text("x")
    code, out, err = _run(["attack", model_file[0], *argv], capsys)
    assert code == 2 and msg in err, err
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file.txt"]  # nothing left behind


def test_missing_model_refused_before_torch(tmp_path):
    """Bad values are refused before torch is imported (it takes seconds to import)."""
    code = (
        "import sys\nfrom cli.main import main\n"
        f"cases = [['attack', {str(tmp_path / 'nope.pt')!r}],\n"
        f"         ['attack', {str(tmp_path / 'nope.pt')!r}, '--confidence', '2'],\n"
        "         ['attack', 'x.pt', '--members', 'm.npz']]\n"
        "for argv in cases:\n"
        "    try:\n        main(argv)\n    except SystemExit as exc:\n        assert exc.code == 2, argv\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("dpaudit: error:") == 3


def test_report_needs_matplotlib_before_work(model_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    rep = tmp_path / "rep"
    code, out, err = _run(["attack", model_file[0], "--attack", "loss", "--report", rep], capsys)
    assert code == 2 and "needs matplotlib" in err and out == ""
    assert not rep.exists()


def test_report_is_all_or_nothing(model_file, tmp_path, monkeypatch):
    """A failure while drawing a plot leaves no report.json (and no folder) behind."""
    from dpaudit.attacks import report as report_mod
    from dpaudit.attacks.inversion import InversionConfig
    from dpaudit.attacks.options import AttackOptions
    from dpaudit.attacks.target import target_from_model_file

    rep = report_mod.run_attacks(target_from_model_file(model_file[0]),
                                 AttackOptions(inversion=InversionConfig(max_iter=5)))
    assert rep.files() == ("report.json", "roc.png", "inversion.png", "report.md")

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report_mod, "inversion_figure", broken)
    out = tmp_path / "rep"
    with pytest.raises(RuntimeError, match="plot failed"):
        report_mod.write_report(rep, out)
    assert not out.exists()
    out.mkdir()
    with pytest.raises(RuntimeError):
        report_mod.write_report(rep, out)
    assert list(out.iterdir()) == []  # an existing folder stays, empty


def test_text_summary_comes_from_the_library(model_file, capsys):
    from dpaudit.attacks.options import AttackOptions
    from dpaudit.attacks.report import run_attacks
    from dpaudit.attacks.target import target_from_model_file

    rep = run_attacks(target_from_model_file(model_file[0]), AttackOptions(attacks=("loss",)))
    code, out, _ = _run(["attack", model_file[0], "--attack", "loss"], capsys)
    assert code == 0 and out.strip() == rep.to_text().strip()
