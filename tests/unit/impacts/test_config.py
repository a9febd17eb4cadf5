"""YAML configs with ``--set`` overrides: typed values, strict keys, errors that name the culprit."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from impacts.config import dump_config, load_config
from impacts.errors import ConfigError
from tiling.config import SynthConfig, TileConfig

CONFIGS = Path(__file__).parents[3] / "configs"


def _write(tmp_path: Path, text: str, name: str = "tile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_file_sets_fields_and_leaves_the_rest_at_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "patch_px: 256\nsplit:\n  val_fraction: 0.1\n")
    cfg = load_config(path, TileConfig)
    assert cfg.patch_px == 256
    assert cfg.split.val_fraction == 0.1
    assert cfg.split.test_fraction == TileConfig.model_validate({}).split.test_fraction
    assert cfg.seed == TileConfig.model_validate({}).seed


def test_overrides_win_over_the_file_and_reach_nested_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "seed: 1\nsplit:\n  val_fraction: 0.1\n  test_fraction: 0.3\n")
    cfg = load_config(path, TileConfig, ["seed=7", "split.val_fraction=0.25"])
    assert cfg.seed == 7
    assert cfg.split.val_fraction == 0.25
    assert cfg.split.test_fraction == 0.3  # a sibling of an overridden key is kept


def test_overrides_are_parsed_as_yaml(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        TileConfig,
        [
            "patch_px=256",
            "negatives_per_positive=2",
            "border_share=0.3",
            "split.val_scenes=[P01_001, B02_002]",
            "split.test_scenes=[]",
        ],
    )
    assert cfg.patch_px == 256
    assert cfg.negatives_per_positive == 2.0
    assert cfg.border_share == 0.3
    assert cfg.split.val_scenes == ["P01_001", "B02_002"]
    assert cfg.split.test_scenes == []


def test_override_creates_a_section_missing_from_the_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "seed: 2\n"), TileConfig, ["split.test_fraction=0.1"])
    assert cfg.split.test_fraction == 0.1
    assert cfg.seed == 2


def test_null_override_sets_none() -> None:
    assert load_config(None, SynthConfig, ["size=[512, 768]"]).size == (512, 768)
    assert load_config(None, SynthConfig, ["size=null"]).size is None


def test_no_file_gives_the_defaults() -> None:
    assert load_config(None, TileConfig) == TileConfig.model_validate({})


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, ""), TileConfig) == TileConfig.model_validate({})


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "key"),
    [
        ("patch_szie: 128\n", [], "patch_szie"),
        ("split:\n  val_fracton: 0.1\n", [], "split.val_fracton"),
        ("", ["negative_strid_px=32"], "negative_strid_px"),
        ("", ["split.tset_scenes=[a]"], "split.tset_scenes"),
    ],
)
def test_unknown_key_is_an_error_naming_the_key(
    tmp_path: Path, yaml_text: str, overrides: list[str], key: str
) -> None:
    path = _write(tmp_path, yaml_text)
    with pytest.raises(ConfigError, match=rf"{key}\b") as info:
        load_config(path, TileConfig, overrides)
    assert str(path) in str(info.value)


def test_invalid_value_names_every_offending_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "patch_px: 8\nborder_share: 2\n")
    with pytest.raises(ConfigError, match="patch_px") as info:
        load_config(path, TileConfig)
    assert "border_share" in str(info.value)


def test_cross_field_rule_is_checked_after_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "patch_px: 128\nnegative_stride_px: 64\n")
    with pytest.raises(ConfigError, match="must divide patch_px"):
        load_config(path, TileConfig, ["negative_stride_px=48"])


def test_bad_yaml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "patch_px: [128\nseed: 0\n", name="broken.yaml")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path, TileConfig)
    assert str(path) in str(info.value)


def test_top_level_list_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "- patch_px\n- 128\n", name="list.yaml")
    with pytest.raises(ConfigError, match="mapping") as info:
        load_config(path, TileConfig)
    assert str(path) in str(info.value)


def test_missing_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path, TileConfig)
    assert str(path) in str(info.value)


def test_directory_instead_of_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path, TileConfig)


@pytest.mark.parametrize("override", ["seed", "seed 3", "=3", " =3", ""])
def test_override_without_key_and_equals_is_an_error(override: str) -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, TileConfig, [override])


def test_override_with_invalid_yaml_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, TileConfig, ["split.val_scenes=[a, b"])


def test_override_into_a_scalar_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "seed: 1\n")
    with pytest.raises(ConfigError, match="'seed' is not a section"):
        load_config(path, TileConfig, ["seed.value=3"])


def test_config_errors_are_value_errors() -> None:
    # Callers that only know built-ins (click, FastAPI) can still catch them.
    with pytest.raises(ValueError):
        load_config(None, TileConfig, ["seed"])


def test_dumped_config_loads_back_equal(tmp_path: Path) -> None:
    cfg = load_config(None, TileConfig, ["seed=5", "split.val_scenes=[x]", "border_share=0.2"])
    path = _write(tmp_path, dump_config(cfg), name="resolved.yaml")
    assert load_config(path, TileConfig) == cfg


@pytest.mark.parametrize(("name", "model"), [("tile.yaml", TileConfig), ("synth.yaml", SynthConfig)])
def test_repo_configs_load(name: str, model: type[TileConfig] | type[SynthConfig]) -> None:
    path = CONFIGS / name
    cfg = load_config(path, model)
    assert isinstance(cfg, model)
    written = yaml.safe_load(path.read_text())
    assert cfg.model_dump(mode="json") == written  # every key in the file is a field and is used


def test_an_unknown_key_lists_the_valid_keys_of_its_section() -> None:
    with pytest.raises(
        ConfigError, match=r"split\.val_fracton: .*valid keys in split: .*val_fraction"
    ) as info:
        load_config(None, TileConfig, ["split.val_fracton=0.1"])
    assert "\n" not in str(info.value)


def test_validate_config_names_options_as_the_user_typed_them() -> None:
    from impacts.config import validate_config

    with pytest.raises(ConfigError) as info:
        validate_config(SynthConfig, {"count": 0}, "synth options", "see --help", names={"count": "--count"})
    assert str(info.value).startswith("invalid synth options: --count: ")
    assert "(got 0)" in str(info.value) and str(info.value).endswith("; see --help")
