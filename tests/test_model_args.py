"""``--model-arg KEY=VALUE`` and the general ``mlp``: parsing, the TOML form, errors naming
the key (exit 2), and the arguments travelling with the checkpoint."""

import pytest
import torch

from mnist_classifier import create_model
from mnist_classifier.cli import main
from mnist_classifier.cli.options import parse_model_args
from mnist_classifier.errors import ConfigError
from mnist_classifier.models.registry import count_parameters, model_arguments
from mnist_classifier.training.configure import make_config


def test_values_are_read_as_lists_numbers_and_flags():
    assert parse_model_args(["hidden=256,128,64", "dropout=0.1", "batch-norm=true"]) == {
        "hidden": [256, 128, 64],
        "dropout": 0.1,
        "batch_norm": True,
    }
    assert parse_model_args(["hidden=512"]) == {"hidden": 512}
    assert parse_model_args(["hidden=512,"]) == {"hidden": [512]}
    assert parse_model_args(None) is None


@pytest.mark.parametrize("item", ["dropout", "=3", "two words=1", "hidden="])
def test_malformed_items_are_refused(item):
    with pytest.raises(ConfigError, match="--model-arg"):
        parse_model_args([item])


def test_general_mlp_depth_widths_dropout_batch_norm():
    model = create_model("mlp", hidden=[256, 128, 64, 32], dropout=0.1, batch_norm=True)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [256, 128, 64, 32, 10]
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.1 for m in model.modules())
    # The original projects' names are presets of the general model.
    assert count_parameters(create_model("mlp", hidden=[128, 64])) == count_parameters(
        create_model("mlp-128-64")
    )
    assert count_parameters(create_model("mlp", hidden=128)) == 101_770
    assert set(model_arguments("mlp")) == {"hidden", "dropout", "batch_norm"}


def test_cnn_takes_its_width():
    assert count_parameters(create_model("cnn", width=8)) < count_parameters(create_model("cnn"))


@pytest.mark.parametrize(
    ("model", "kwargs", "key"),
    [
        ("mlp", {"hidden": []}, "hidden"),
        ("mlp", {"hidden": [64, 64, 64, 64, 64]}, "hidden"),
        ("mlp", {"hidden": [64, 0]}, "hidden"),
        ("mlp", {"hidden": [64.5]}, "hidden"),
        ("mlp", {"dropout": 1.0}, "dropout"),
        ("mlp", {"batch_norm": "yes"}, "batch_norm"),
        ("mlp", {"depth": 3}, "depth"),
        ("cnn", {"width": 0}, "width"),
        ("cnn", {"width": "wide"}, "width"),
        ("mlp-128", {"hidden": [10]}, "hidden"),
    ],
)
def test_bad_keys_and_values_name_the_key(model, kwargs, key):
    with pytest.raises(ConfigError, match=key) as info:
        create_model(model, **kwargs)
    assert "\n" not in str(info.value)


def test_model_args_update_the_composed_config(tmp_path):
    cfg = make_config(recipe="cnn-best", model_args={"dropout": 0.2})
    assert cfg.model_kwargs == {"width": 24, "dropout": 0.2}
    toml = tmp_path / "c.toml"
    toml.write_text('model = "mlp"\n[model_kwargs]\nhidden = [300, 100]\ndropout = 0.1\n')
    cfg = make_config(toml, model_args={"dropout": 0.3})
    assert cfg.model == "mlp" and cfg.model_kwargs == {"hidden": [300, 100], "dropout": 0.3}


def test_cli_errors_are_one_line_and_exit_2(capsys, tmp_path):
    code = main(
        ["train", "--model", "mlp", "--model-arg", "hidden=64,abc", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "hidden" in err and len(err.splitlines()) == 1
    code = main(["train", "--model", "mlp", "--model-arg", "wings=2", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "'wings'" in err and "hidden, dropout, batch_norm" in err
    assert not (tmp_path / "r").exists()


def test_cli_trains_the_general_mlp_and_the_checkpoint_keeps_its_arguments(tmp_path, capsys):
    out = tmp_path / "r"
    code = main([
        "train", "--model", "mlp", "--model-arg", "hidden=32,16,8", "--model-arg", "dropout=0.1",
        "--model-arg", "batch_norm=true", "--epochs", "1", "--limit-train", "300",
        "--threads", "1", "--no-report", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    ckpt = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["model"] == {
        "name": "mlp",
        "kwargs": {"hidden": [32, 16, 8], "dropout": 0.1, "batch_norm": True},
    }
    from mnist_classifier.models.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(out / "checkpoints" / "best.pt"))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
