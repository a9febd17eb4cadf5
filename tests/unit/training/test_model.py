"""The U-Net builder: shapes, parameter counts of the config family, layer recipe,
mixed precision, and round trips through ``.keras`` files and model bundles."""

from __future__ import annotations

import functools
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from impacts.config import load_config
from impacts.errors import BundleError, ConfigError
from training import load_bundle
from training.bundle import export_bundle
from training.config import ModelConfig, TrainConfig
from training.model import build_unet, count_trainable

CONFIGS = sorted((Path(__file__).parents[3] / "configs").glob("unet-*.yaml"))
FAMILY = {"unet-0.5m.yaml": 0.5e6, "unet-1.5m.yaml": 1.5e6, "unet-5m.yaml": 5e6}
TINY = ModelConfig(input_px=32, depth=2, base_filters=4, dropout=0.1, l2=1e-5)


def _config(name: str) -> TrainConfig:
    return load_config(Path(__file__).parents[3] / "configs" / name, TrainConfig)


@functools.cache
def _built(path: Path) -> tuple[ModelConfig, Any]:
    """Each shipped config's model, built once for the module (the 5 M one takes a while)."""
    cfg = load_config(path, TrainConfig).model
    return cfg, build_unet(cfg)


def _batch(n: int, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, rows, cols, 1), dtype=np.float32)


def _consumers(model: Any) -> dict[int, list[Any]]:
    """Layers keyed by the id of the tensor they read (a graph walk of the functional model)."""
    out: dict[int, list[Any]] = defaultdict(list)
    for layer in model.layers:
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        for tensor in inputs:
            out[id(tensor)].append(layer)
    return out


def _block_convs(model: Any) -> list[Any]:
    """The 3x3 convolutions of the blocks (not the 1x1 head, not the up-convolutions)."""
    return [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.name != "impact_prob"
    ]


# --- shapes and size checks ------------------------------------------------------------


@pytest.fixture(scope="module")
def depth3() -> Any:
    return build_unet(ModelConfig(input_px=32, depth=3, base_filters=4))


@pytest.mark.parametrize(("rows", "cols"), [(32, 32), (64, 64), (128, 128), (32, 96), (160, 64)])
def test_output_is_one_probability_per_input_pixel(depth3: Any, rows: int, cols: int) -> None:
    model = depth3
    probs = np.asarray(model.predict_on_batch(_batch(2, rows, cols)))
    assert probs.shape == (2, rows, cols, 1)
    assert np.all((probs >= 0) & (probs <= 1))


def test_model_config_rejects_an_input_that_is_not_a_multiple_of_2_to_the_depth() -> None:
    with pytest.raises(ValidationError, match=r"multiple of 2\*\*depth = 16"):
        ModelConfig(input_px=100, depth=4)
    ModelConfig(input_px=96, depth=5)  # 96 = 3 * 32 is fine


def test_load_config_reports_a_bad_input_size_as_config_error() -> None:
    with pytest.raises(ConfigError, match="multiple of 2"):
        load_config(None, TrainConfig, ["model.input_px=100", "model.depth=4"])


def test_build_unet_checks_the_input_size_itself() -> None:
    unchecked = ModelConfig.model_construct(input_px=100, depth=4)  # skips pydantic validation
    with pytest.raises(ConfigError, match=r"input_px 100 .*2\*\*depth = 16"):
        build_unet(unchecked)


def test_build_unet_rejects_too_few_filters() -> None:
    with pytest.raises(ConfigError, match="base_filters 1"):
        build_unet(ModelConfig.model_construct(input_px=32, depth=2, base_filters=1))


# --- the config family -----------------------------------------------------------------


def test_every_unet_config_is_tested() -> None:
    names = {p.name for p in CONFIGS}
    assert set(FAMILY) <= names and {"unet-tiny.yaml", "unet-demo.yaml"} <= names, names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds_its_expected_parameter_count(path: Path) -> None:
    cfg, model = _built(path)
    assert cfg.expected_params is not None, f"{path.name} does not state expected_params"
    assert count_trainable(model) == cfg.expected_params
    if path.name in FAMILY:
        target = FAMILY[path.name]
        assert abs(count_trainable(model) - target) <= 0.1 * target, (path.name, count_trainable(model))


def test_the_family_grows_with_its_name() -> None:
    counts = [_config(name).model.expected_params or 0 for name in FAMILY]
    assert counts == sorted(counts) and len(set(counts)) == 3


# --- the layer recipe ------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_block_convolution_is_followed_by_batchnorm_then_elu(path: Path) -> None:
    cfg, model = _built(path)
    consumers = _consumers(model)
    convs = _block_convs(model)
    assert len(convs) == 2 * (2 * cfg.depth + 1), "two convolutions per block"
    for conv in convs:
        (bn,) = consumers[id(conv.output)]
        assert isinstance(bn, keras.layers.BatchNormalization), conv.name
        assert not conv.use_bias, f"{conv.name}: BatchNorm's offset makes the bias redundant"
        (act,) = consumers[id(bn.output)]
        assert isinstance(act, keras.layers.Activation), bn.name
        assert act.get_config()["activation"] == "elu", act.name


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_configs_get_their_dropout_and_l2(path: Path) -> None:
    cfg, model = _built(path)
    assert cfg.dropout > 0 and cfg.l2 > 0, "every shipped config regularises"
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(drops) == 2 * cfg.depth + 1, "one dropout per block"
    assert all(d.rate == pytest.approx(cfg.dropout) for d in drops)
    for conv in _block_convs(model):
        assert isinstance(conv.kernel_regularizer, keras.regularizers.L2), conv.name
        assert conv.kernel_regularizer.get_config()["l2"] == pytest.approx(cfg.l2)
    assert len(model.losses) == len(_block_convs(model)), "one L2 penalty per block kernel"


def test_no_dropout_and_no_l2_when_switched_off() -> None:
    model = build_unet(TINY.model_copy(update={"dropout": 0.0, "l2": 0.0}))
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert all(conv.kernel_regularizer is None for conv in _block_convs(model))
    assert model.losses == []


def test_output_is_a_float32_sigmoid_even_under_mixed_precision() -> None:
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        model = build_unet(TINY)
        assert model.get_layer("down0_conv1").compute_dtype == "float16", "policy not in effect"
        head = model.get_layer("impact_prob")
        assert head.get_config()["activation"] == "sigmoid"
        assert head.compute_dtype == "float32"
        assert model.output.dtype == "float32"
        probs = np.asarray(model.predict_on_batch(_batch(2, 32, 32)))
        assert probs.dtype == np.float32
        assert np.all((probs >= 0) & (probs <= 1))
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --- saving and bundles ----------------------------------------------------------------


def test_keras_file_round_trip_predicts_the_same(tmp_path: Path) -> None:
    model = build_unet(_config("unet-tiny.yaml").model)
    batch = _batch(3, 64, 64, seed=5)
    before = np.asarray(model.predict_on_batch(batch))
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(reloaded.predict_on_batch(batch)), before)
    assert count_trainable(reloaded) == count_trainable(model)


def test_bundle_round_trip_keeps_predictions_config_and_version(tmp_path: Path) -> None:
    cfg = _config("unet-tiny.yaml")
    model = build_unet(cfg.model)
    batch = _batch(3, 32, 64, seed=6)
    before = np.asarray(model.predict_on_batch(batch))
    history = {"loss": [0.9, 0.5], "val_loss": [1.0, 0.7]}
    metrics = {"val": {"iou": 0.25}}
    run = tmp_path / "run"
    path = export_bundle(run / "bundle", model, cfg, "run-r0", history, metrics)
    assert path == run / "bundle"
    assert not (run / "bundle.partial").exists(), "the partial folder is renamed away"
    for where in (path, run):  # the bundle folder or the run folder that holds it
        bundle = load_bundle(where)
        assert bundle.path == path
        assert bundle.config == cfg
        assert bundle.version == "run-r0"
        assert bundle.history == history and bundle.metrics == metrics
        np.testing.assert_array_equal(np.asarray(bundle.model.predict_on_batch(batch)), before)
    assert json.loads((path / "version.json").read_text())["version"] == "run-r0"


def test_load_bundle_without_model_file_names_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-bundle"
    folder.mkdir()
    (folder / "config.yaml").write_text("seed: 0\n")
    (folder / "version.json").write_text('{"version": "x"}\n')
    with pytest.raises(BundleError, match=r"model\.keras") as info:
        load_bundle(folder)
    assert str(folder) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
