"""Run config: layering order, strict validation with dotted paths, TOML round trip, presets."""

from __future__ import annotations

import tomllib

import pytest

from cgantool.config import (
    RunConfig,
    config_to_dict,
    diff_configs,
    parse_set,
    preset_names,
    resolve_config,
    to_toml,
    validate_config,
)
from cgantool.errors import ConfigError


def test_presets_are_listed():
    assert {"sngan", "infomax-gan", "contragan", "dualcontrast"} <= set(preset_names())


@pytest.mark.parametrize("name", ["sngan", "infomax-gan", "contragan", "dualcontrast"])
def test_each_preset_validates_and_names_itself(name):
    cfg = resolve_config(name)
    assert cfg.preset == name
    assert isinstance(cfg.optim.beta1, float)


def test_layering_order_preset_file_set_flags(tmp_path):
    # preset sngan: batch 64, lr_g 2e-4. The file sets batch 32 and lr_g 1e-4; --set overrides batch to 16;
    # the explicit flag overrides batch to 8. Each layer wins over the one before it, untouched keys survive.
    f = tmp_path / "c.toml"
    f.write_text("[train]\nbatch_size = 32\n[optim]\nlr_g = 1e-4\n")
    assert resolve_config("sngan", f).train.batch_size == 32
    cfg = resolve_config("sngan", f, ["train.batch_size=16"])
    assert cfg.train.batch_size == 16 and cfg.optim.lr_g == 1e-4
    cfg = resolve_config("sngan", f, ["train.batch_size=16"], {"train.batch_size": 8, "train.seed": None})
    assert cfg.train.batch_size == 8
    assert cfg.train.seed == 0  # a None flag means "not given"
    assert cfg.optim.lr_d == 2e-4  # from the preset


def test_set_parses_toml_values_and_bare_strings():
    assert parse_set("loss.infomax.weight=0.2") == {"loss": {"infomax": {"weight": 0.2}}}
    assert parse_set("data.source=shapes") == {"data": {"source": "shapes"}}
    assert parse_set("eval.metrics=['fid', 'kid']") == {"eval": {"metrics": ["fid", "kid"]}}
    assert parse_set("train.hflip=false") == {"train": {"hflip": False}}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_set("train.batch_size")


def test_unknown_key_names_dotted_path_and_suggests():
    with pytest.raises(ConfigError) as e:
        resolve_config("sngan", sets=["loss.infomax.wieght=0.2"])
    assert "loss.infomax.wieght" in e.value.message
    assert "loss.infomax.weight" in e.value.hint


def test_invalid_value_names_dotted_path():
    with pytest.raises(ConfigError) as e:
        resolve_config("sngan", sets=["train.batch_size=-3"])
    assert "train.batch_size" in e.value.message and "-3" in e.value.message
    with pytest.raises(ConfigError, match="loss.adversarial"):
        resolve_config("sngan", sets=["loss.adversarial=wgan"])


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        resolve_config("contragn")
    assert "contragn" in e.value.message
    assert "did you mean 'contragan'" in e.value.hint


def test_missing_and_broken_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve_config("sngan", tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config("sngan", bad)


def test_toml_round_trip_of_every_preset():
    for name in preset_names():
        cfg = resolve_config(name)
        again = validate_config(tomllib.loads(to_toml(config_to_dict(cfg))))
        assert again == cfg


def test_diff_configs_lists_differing_keys():
    a = RunConfig()
    b = resolve_config("sngan", sets=["train.batch_size=7", "optim.lr_g=0.1"])
    assert "train.batch_size" in diff_configs(a, b)
    assert "optim.lr_g" in diff_configs(a, b)
    assert diff_configs(b, b) == []
