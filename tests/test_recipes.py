import pytest

from mnist_classifier.config import TrainConfig
from mnist_classifier.errors import ConfigError
from mnist_classifier.training.api import make_config
from mnist_classifier.training.recipes import RECIPES, list_recipes, recipe_values


@pytest.mark.parametrize("name", list_recipes())
def test_every_recipe_resolves_to_a_valid_config(name):
    cfg = make_config(recipe=name)
    assert isinstance(cfg, TrainConfig)
    assert cfg.recipe == name
    for key, value in RECIPES[name][1].items():
        assert getattr(cfg, key) == value, key


def test_seed_recipe_is_the_original_projects_recipe():
    cfg = make_config(recipe="seed")
    assert (cfg.model, cfg.optimizer, cfg.lr, cfg.weight_decay) == (
        "mlp-128-64-dropout", "adam", 1e-3, 1e-4,
    )  # fmt: skip
    assert (cfg.batch_size, cfg.epochs, cfg.val_fraction, cfg.schedule) == (32, 10, 0.2, "none")
    # The defaults are the seed recipe too.
    assert make_config() == make_config(recipe="seed").updated({"recipe": None})


def test_flags_override_a_recipe():
    cfg = make_config(recipe="cnn-best", epochs=1, seed=4)
    assert cfg.epochs == 1 and cfg.seed == 4 and cfg.model == "cnn"


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="unknown recipe 'turbo'"):
        recipe_values("turbo")


def test_robust_recipe_is_a_small_cnn_with_the_robust_augmentation():
    from mnist_classifier.data.augment import ROBUST, make_augmenter
    from mnist_classifier.models.registry import create_model

    cfg = make_config(recipe="robust")
    assert cfg.augment == "robust" and cfg.model == "cnn" and cfg.tta
    make_augmenter(cfg.augment)  # a known augmentation
    # Every robust transform is switched on (stroke width, binary, down-up, box filling).
    assert not any(
        part.is_identity
        for part in (
            ROBUST.box_fill,
            ROBUST.affine,
            ROBUST.resample,
            ROBUST.stroke,
            ROBUST.binarize,
        )
    )
    model = create_model(cfg.model, **cfg.model_kwargs)
    params = sum(p.numel() for p in model.parameters())
    assert params * 4 < 1_000_000  # float32 weights well under the 2 MB checkpoint budget
