"""Models from other packages: the ``mnist_classifier.models`` entry-point group.

A tiny plugin distribution is "installed" into a temporary folder on ``sys.path``: its
module plus a ``.dist-info`` folder with ``METADATA`` and ``entry_points.txt``, which is all
``importlib.metadata`` reads. Its model then trains, and its checkpoint loads in evaluate,
predict, export and serve like a built-in model's.
"""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from mnist_classifier.cli import main
from mnist_classifier.models import registry

PLUGIN_MODULE = '''
"""A user's models, registered in two ways: a decorated factory and a bare factory."""
from torch import nn

from mnist_classifier.models import register_model


@register_model("plugin-linear", "one linear layer, from a plugin package")
def linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def wide(hidden: int = 32) -> nn.Module:
    """two linear layers, registered by the entry point's name"""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def bare():
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
'''


def install_fake_distribution(site: Path, name: str, module: str, source: str, entries: str):
    """Write ``module``.py and ``name``-0.1.dist-info (METADATA, entry_points.txt) into site."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mnist_classifier.models]\n" + entries)


@pytest.fixture
def clean_registry(monkeypatch):
    """The registry as it is now, with plugins not yet loaded; restored after the test."""
    registry._ensure_builtins()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_DESCRIPTIONS", dict(registry._DESCRIPTIONS))
    monkeypatch.setattr(registry, "_PROVIDERS", dict(registry._PROVIDERS))
    monkeypatch.setattr(registry, "_plugins_loaded", False)


@pytest.fixture
def plugin(tmp_path, monkeypatch, clean_registry) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(
        site,
        "mnist-plugin-demo",
        "mnist_plugin_demo",
        PLUGIN_MODULE,
        "linear = mnist_plugin_demo\nplugin-wide = mnist_plugin_demo:wide\n"
        "plugin-bare = mnist_plugin_demo:bare\n",
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("mnist_plugin_demo", None)  # the next test imports it afresh


def test_entry_points_register_modules_and_factories(plugin: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = registry.list_models()
    assert [str(w.message) for w in caught if w.category is registry.PluginWarning] == []
    assert "plugin-linear" in names and "plugin-wide" in names
    assert (
        registry.describe_model("plugin-wide")
        == "two linear layers, registered by the entry point's name"
    )
    assert registry.model_provider("plugin-linear") == "mnist-plugin-demo"
    assert registry.model_provider("cnn") is None
    assert registry.create_model("plugin-wide", hidden=8)[1].out_features == 8
    assert "plugin-bare" in names and registry.describe_model("plugin-bare") == ""  # no docstring


def test_models_command_shows_plugin_models(plugin: Path, capsys) -> None:
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["plugin-linear"]["provider"] == "mnist-plugin-demo"
    assert rows["plugin-linear"]["parameters"] == 28 * 28 * 10 + 10


def test_a_plugin_checkpoint_works_in_every_command(plugin: Path, tmp_path, mnist, capsys) -> None:
    run = tmp_path / "run"
    train = ["train", "--model", "plugin-linear", "--epochs", "1", "--limit-train", "600"]
    assert main([*train, "--out", str(run), "--no-report", "-q"]) == 0
    assert capsys.readouterr().out == f"run folder: {run}\n"

    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "plugin-linear"

    image = tmp_path / "digit.png"
    Image.fromarray(mnist.test_images[0].numpy()).save(image)
    assert main(["predict", str(run), str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["error"] is None

    onnx_file = tmp_path / "plugin.onnx"
    assert main(["export", str(run), "--out", str(onnx_file)]) == 0, capsys.readouterr().err
    assert onnx_file.is_file()

    with warnings.catch_warnings():  # Starlette >= 1.x suggests httpx2; httpx works
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    from mnist_classifier.inference.predictor import load_predictor
    from mnist_classifier.serving.app import create_app

    with TestClient(create_app(load_predictor(run))) as client:
        assert client.get("/api/model").json()["model"] == "plugin-linear"
        pixels = mnist.test_images[0].numpy().tolist()
        answer = client.post("/api/predict", json={"pixels": pixels})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["probabilities"]) == 10


def test_without_the_plugin_its_checkpoint_names_the_missing_package(
    plugin: Path, tmp_path, monkeypatch, capsys
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--model", "plugin-wide", "--epochs", "1", "--limit-train", "300"]
    assert main([*argv, "--out", str(run), "--no-report", "-q"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(registry, "_REGISTRY", {"cnn": registry._REGISTRY["cnn"]})
    assert main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown model 'plugin-wide'" in err and "'mnist_classifier.models' entry point" in err


def test_a_broken_plugin_is_skipped_with_a_warning(tmp_path, monkeypatch, clean_registry) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(
        site,
        "broken-plugin",
        "broken_plugin",
        "raise RuntimeError('boom')\n",
        "x = broken_plugin\n",
    )
    monkeypatch.syspath_prepend(str(site))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = registry.list_models()
    assert "cnn" in names  # the built-in models are still there
    (warning,) = [w for w in caught if issubclass(w.category, registry.PluginWarning)]
    assert "broken-plugin" in str(warning.message) and "boom" in str(warning.message)


def test_a_broken_plugin_is_one_warning_line_in_the_cli(
    tmp_path, monkeypatch, clean_registry, capsys
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    source = textwrap.dedent("from mnist_classifier.models import register_model\nVALUE = 3\n")
    install_fake_distribution(site, "odd-plugin", "odd_plugin", source, "odd = odd_plugin:VALUE\n")
    monkeypatch.syspath_prepend(str(site))
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert "cnn" in captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith("mnist-classifier: warning: model plugin 'odd' from odd-plugin")
    assert "neither a module nor a model factory" in line


def test_a_factory_that_fails_or_needs_arguments_is_one_line_and_models_still_lists(capsys):
    import torch

    from mnist_classifier.cli import main
    from mnist_classifier.errors import ConfigError
    from mnist_classifier.models import registry

    @registry.register_model("test-needs-argument")
    def needs_argument(size):  # no default: `models` cannot build it alone
        return torch.nn.Linear(784, size)

    @registry.register_model("test-broken")
    def broken():
        raise KeyError("weights")

    @registry.register_model("test-not-a-module")
    def not_a_module():
        return "a string"

    try:
        for name, message in [
            ("test-broken", "could not be built (KeyError"),
            ("test-not-a-module", "not a torch module"),
        ]:
            with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
                registry.create_model(name)
        assert registry.model_arguments("test-needs-argument") == {"size": "required"}
        assert main(["models"]) == 0
        out, err = capsys.readouterr()
        assert "test-needs-argument" in out and "mlp-128" in out
        assert "warning: model 'test-broken' could not be built" in err
    finally:
        for name in ("test-needs-argument", "test-broken", "test-not-a-module"):
            registry._REGISTRY.pop(name, None)
            registry._DESCRIPTIONS.pop(name, None)
