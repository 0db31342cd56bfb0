"""`dpaudit train` on the command line: output, model file, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from dpaudit.training import load_model

torch.set_num_threads(1)


def test_cli_train_json_and_model_file(tmp_path, capsys):
    from cli.main import main

    out = tmp_path / "m.pt"
    main(["train", "--epsilon", "3", "--noise-multiplier", "4", "--epochs", "2",
          "--accountant", "rdp", "--out", str(out), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["private"] and 0 < d["epsilon"] <= 3 and d["epochs_trained"] == 2
    model, meta = load_model(out)
    assert meta["epsilon"] == d["epsilon"] and isinstance(model, torch.nn.Module)


def test_cli_train_text_summary(tmp_path, capsys):
    from cli.main import main

    main(["train", "--no-privacy", "--epochs", "1", "--out", str(tmp_path / "m.pt"), "--quiet"])
    text = capsys.readouterr().out
    assert "not private" in text and "test accuracy" in text and "saved" in text


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--epsilon", "2", "--delta", "0.5"], "delta"),
        (["--epsilon", "-2"], "epsilon"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent"], "IDX"),
        (["--plan", "/nonexistent/plan.json"], "not found"),
        (["--device", "cuda"], "CUDA"),
        (["--no-privacy", "--epsilon", "1"], "without privacy takes no target epsilon"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, needle, capsys):
    from cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train", *args, "--out", str(tmp_path / "m.pt"), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("dpaudit: error") or lines[0].startswith("Error")
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in err
    assert not (tmp_path / "m.pt").exists()
