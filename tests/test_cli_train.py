import json

import pytest

from mnist_classifier.cli import main


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet"], "unknown model 'resnet'"),
        (["--epochs", "-1"], "epochs must be positive"),
        (["--val-fraction", "0"], "val_fraction must be between 0 and 1"),
        (["--val-fraction", "1.5"], "val_fraction must be between 0 and 1"),
        (["--batch-size", "0"], "batch_size must be positive"),
        (["--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
        (["--schedule", "step"], "invalid choice: 'step'"),
        (["--epochs", "ten"], "invalid int value: 'ten'"),
        (["--recipe", "fastest"], "invalid choice: 'fastest'"),
        (["--device", "tpu"], "device 'tpu' is not one of"),
    ],
)
def test_invalid_train_values_print_one_line_and_exit_2(args, message, capsys, tmp_path):
    code = main(["train", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_argparse_errors_are_one_line(capsys):
    assert main(["train", "--epochs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs" in err


def test_unknown_config_key_exits_2(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "mlp-128"\nlearning_rate = 0.1\n')
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'learning_rate'" in err and str(cfg) in err
    bad = tmp_path / "bad.toml"
    bad.write_text("model = \n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_config_file_sets_values_and_flags_override(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nmodel = "mlp-128"\nepochs = 5\nlimit_train = 500\nseed = 3\n')
    out = tmp_path / "r"
    code = main(
        ["train", "--config", str(cfg), "--epochs", "1", "--out", str(out), "--no-report",
         "--threads", "2"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    stored = json.loads((out / "config.json").read_text())
    assert stored["model"] == "mlp-128" and stored["epochs"] == 1 and stored["seed"] == 3
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "%" in printed

    assert main(["evaluate", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "mlp-128" and len(result["confusion_matrix"]) == 10
    assert main(["evaluate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "macro avg" in text and "weighted avg" in text and "confusion matrix" in text


def test_evaluate_missing_run_is_one_line_exit_1(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.pt" in err


def test_models_lists_parameter_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mlp-128-64-dropout" in out and "109,386" in out


def test_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["train", "--out", str(blocker / "run"), "--limit-train", "100", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and str(blocker) in err


def test_no_tta_turns_a_recipe_setting_off(tmp_path, monkeypatch):
    seen = {}

    def fake_train(config=None, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("mnist_classifier.training.api.train", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--recipe", "cnn-best", "--no-tta"])
    assert seen["tta"] is False
