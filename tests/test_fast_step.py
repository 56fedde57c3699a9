"""The hand-fused MLP step and the direct Adam step train exactly as the eager step does."""

import copy

import pytest
import torch
import torch.nn.functional as F

import mnist_classifier
from mnist_classifier.config import TrainConfig
from mnist_classifier.errors import ConfigError
from mnist_classifier.models.checkpoint import load_checkpoint
from mnist_classifier.models.registry import create_model
from mnist_classifier.training.fast_step import DirectAdamStep, FusedMLPStep, select_fast_step

CPU = torch.device("cpu")


def _batches(n, batch=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(n)
    ]


def _adam(model):
    return torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)


@pytest.mark.parametrize(
    ("name", "kwargs", "smoothing"),
    [
        ("mlp-128-64-dropout", {}, 0.0),
        ("mlp-128-64-dropout", {}, 0.1),
        ("mlp", {"hidden": [64, 32, 16], "dropout": 0.3}, 0.0),
        ("mlp-128", {}, 0.0),
    ],
)
def test_fused_step_matches_autograd_with_the_same_dropout_masks(name, kwargs, smoothing):
    torch.manual_seed(0)
    eager_model = create_model(name, **kwargs).train()
    fused_model = copy.deepcopy(eager_model)
    eager_opt, fused_opt = _adam(eager_model), _adam(fused_model)
    step = FusedMLPStep(fused_model, smoothing)
    # A last batch of another size, as the end of an epoch has.
    data = _batches(12) + _batches(1, batch=7, seed=2)
    for i, (x, y) in enumerate(data):
        torch.manual_seed(100 + i)  # the same global generator state for both: the same masks
        logits = eager_model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        eager_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.manual_seed(100 + i)
        fused_logits, fused_loss = step(x, y)
        for a, b in zip(eager_model.parameters(), fused_model.parameters(), strict=True):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(fused_logits, logits.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fused_loss, loss.detach(), rtol=1e-5, atol=1e-6)
        assert not fused_loss.requires_grad
        eager_opt.step()
        fused_opt.step()
    for a, b in zip(eager_model.parameters(), fused_model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_fused_step_in_eval_mode_draws_no_masks():
    torch.manual_seed(0)
    model = create_model("mlp-128-64-dropout").eval()
    ((x, y),) = _batches(1)
    before = torch.get_rng_state()
    logits, _ = FusedMLPStep(model)(x, y)
    assert torch.equal(torch.get_rng_state(), before)
    torch.testing.assert_close(logits, model(x).detach(), rtol=1e-5, atol=1e-6)


def test_direct_adam_step_is_the_fused_optimizer_step_bit_for_bit():
    torch.manual_seed(0)
    a = create_model("mlp-128-64")
    b = copy.deepcopy(a)
    opt_a, opt_b = _adam(a), _adam(b)
    schedule_b = torch.optim.lr_scheduler.LambdaLR(opt_b, lambda s: 1.0 / (1 + s))
    schedule_a = torch.optim.lr_scheduler.LambdaLR(opt_a, lambda s: 1.0 / (1 + s))
    direct = DirectAdamStep(opt_b)
    assert DirectAdamStep.applies(opt_b)
    for x, y in _batches(6):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        opt_a.step()
        direct()
        schedule_a.step()
        schedule_b.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    for key in sa["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][key][name], sb["state"][key][name])


def test_direct_adam_step_refuses_what_it_does_not_reproduce():
    model = create_model("mlp-128")
    assert not DirectAdamStep.applies(
        torch.optim.Adam(model.parameters(), amsgrad=True, fused=True)
    )
    assert not DirectAdamStep.applies(torch.optim.Adam(model.parameters(), foreach=True))
    assert not DirectAdamStep.applies(torch.optim.SGD(model.parameters(), lr=0.1))
    hooked = _adam(model)
    hooked.register_step_post_hook(lambda *args: None)
    assert not DirectAdamStep.applies(hooked)


def test_fast_step_selection_and_the_config_option():
    mlp = create_model("mlp-128-64-dropout")
    assert select_fast_step("auto", mlp, CPU, 1, 0.0) is not None
    assert select_fast_step("off", mlp, CPU, 1, 0.0) is None
    assert select_fast_step("auto", mlp, CPU, 2, 0.0) is None  # DDP: the eager step
    assert select_fast_step("auto", mlp, torch.device("cuda"), 1, 0.0) is None
    for other in ("cnn-tiny", "mlp-128-64-bn"):
        model = create_model(other)
        assert select_fast_step("auto", model, CPU, 1, 0.0) is None
        with pytest.raises(ConfigError, match="fast_step = on: it trains only"):
            select_fast_step("on", model, CPU, 1, 0.0)
    with pytest.raises(ConfigError, match="fast_step = on: it does not run under DDP"):
        select_fast_step("on", mlp, CPU, 2, 0.0)
    with pytest.raises(ConfigError, match="unknown fast_step 'fast'; choose one of: auto, on, off"):
        TrainConfig(fast_step="fast").validate()
    assert TrainConfig.from_dict({"fast-step": "off"}).fast_step == "off"


def test_the_trainer_with_the_fast_step_ends_with_the_eager_weights(small_mnist, tmp_path):
    common = dict(
        dataset=small_mnist, model="mlp-128-64-dropout", epochs=2, limit_train=640,
        log=None, threads=1,
    )  # fmt: skip
    runs = {
        mode: mnist_classifier.train(out=tmp_path / mode, fast_step=mode, **common)
        for mode in ("off", "on")
    }
    eager = load_checkpoint(tmp_path / "off" / "checkpoints" / "last.pt")
    fused = load_checkpoint(tmp_path / "on" / "checkpoints" / "last.pt")
    for key, value in eager["state_dict"].items():
        torch.testing.assert_close(fused["state_dict"][key], value, rtol=1e-3, atol=1e-4)
    for a, b in zip(runs["off"].history, runs["on"].history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-4)
    # The optimizer state resumes from either: the same keys and step counts.
    steps = [ck["training"]["optimizer"]["state"][0]["step"] for ck in (eager, fused)]
    assert torch.equal(steps[0], steps[1]) and float(steps[0]) == 40


def test_the_fast_step_needs_no_compiler(small_mnist, tmp_path, monkeypatch):
    """Nothing in the trainer compiles: with no C++ compiler and torch.compile failing,
    the fused step still trains."""

    def unavailable(*args, **kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setattr(torch, "compile", unavailable)
    run = mnist_classifier.train(
        out=tmp_path / "r", dataset=small_mnist, model="mlp-128-64-dropout", epochs=1,
        limit_train=320, fast_step="on", log=None, threads=1,
    )  # fmt: skip
    assert run.metrics["val"]["accuracy"] > 0.3


def test_the_cli_refuses_fast_step_on_where_it_cannot_apply(tmp_path, capsys):
    from mnist_classifier.cli import main

    out = tmp_path / "r"
    code = main(["train", "--model", "cnn-tiny", "--fast-step", "on", "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "fast_step = on: it trains only" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["train", "--fast-step", "fast", "--out", str(out)]) == 2
