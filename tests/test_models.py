import pytest
import torch

from mnist_classifier import create_model, list_models
from mnist_classifier.errors import ConfigError
from mnist_classifier.models.registry import count_parameters, register_model


@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_finite_logits(name):
    torch.manual_seed(0)
    model = create_model(name)
    model.train()
    logits = model(torch.randn(5, 1, 28, 28))
    assert logits.shape == (5, 10)
    assert torch.isfinite(logits).all()
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_original_project_models_have_their_sizes():
    # 784*128+128 + 128*10+10 and 784*128+128 + 128*64+64 + 64*10+10
    assert count_parameters(create_model("mlp-128")) == 101_770
    assert count_parameters(create_model("mlp-128-64")) == 109_386
    assert count_parameters(create_model("mlp-128-64-dropout")) == 109_386


def test_models_return_logits_not_probabilities():
    torch.manual_seed(0)
    logits = create_model("mlp-128-64").eval()(torch.randn(8, 1, 28, 28))
    assert not torch.allclose(logits.sum(1), torch.ones(8))


def test_list_models_pattern_and_unknown_name():
    assert set(list_models("cnn*")) >= {"cnn-small", "cnn"}
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        create_model("resnet")
    with pytest.raises(ConfigError, match="does not accept"):
        create_model("cnn", depth=3)


def test_register_model_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn")(lambda: None)
