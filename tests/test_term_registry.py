"""A method owns its config: a term declared entirely in this file (config section, check, losses) trains through the
public CLI, and names (arch, adversarial loss, text encoder) are validated against their registries."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import Field
from torch import nn

from cgantool.config import RunConfig, config_to_dict, flatten, resolve_config, validate_config
from cgantool.errors import ConfigError
from cgantool.terms import TERMS, Term, TermConfig
from tests.conftest import TINY, invoke


class ToyConfig(TermConfig):
    weight: float = Field(0.0, ge=0.0, description="The toy term's weight; 0 = off.")
    scale: float = Field(1.0, gt=0.0, description="Multiplies the D side.")


class ToyTerm(Term):
    """Pulls a linear head's output on D's pooled features towards 0 (real in D, fake in G)."""

    name = "toy"
    key = "toy"
    what = "the toy term"
    section = ToyConfig

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.loss.toy.scale > 10:
            raise ConfigError("loss.toy.scale above 10 with the toy term on", hint="set loss.toy.scale <= 10")

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.channels = ctx.feature_dims["h"]

    def build_heads(self):
        return nn.Linear(self.channels, 1)

    def d_loss(self, heads, real, fake, batch):
        return self.cfg.scale * heads(real.h).pow(2).mean()

    def g_loss(self, heads, fake, real, batch):
        return heads(fake.h).pow(2).mean()


@pytest.fixture
def toy_term():
    TERMS.register("toy")(ToyTerm)
    try:
        yield ToyTerm
    finally:
        TERMS.unregister("toy")


def test_a_term_from_this_file_alone_trains_through_the_cli(toy_term, runner, tmp_path):
    cfg = resolve_config("sngan", sets=["loss.toy.weight=0.5"])
    assert cfg.loss.toy.weight == 0.5 and cfg.loss.toy.scale == 1.0  # its section, with its defaults
    assert "toy" in RunConfig.model_json_schema()["$defs"]["LossConfig"]["properties"]  # `cgantool config schema`
    out = tmp_path / "toy"
    result = invoke(runner, "train", "--preset", "sngan", "--data", "shapes:16", "--steps", "2", "--batch-size", "4",
                    "--out", out, "--no-progress", "--device", "cpu", *TINY, "--set", "loss.toy.weight=0.5")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    row = rows[-1]
    assert {"d/toy", "g/toy"} <= row.keys(), row
    assert all(torch.isfinite(torch.tensor(row[k])) for k in ("d/toy", "g/toy"))
    shown = invoke(runner, "config", "show", "--set", "loss.toy.weight=0.5")
    assert shown.exit_code == 0 and "[loss.toy]\nweight = 0.5\nscale = 1.0" in shown.output, shown.output
    # The run's checkpoint (its stored config names loss.toy) loads and samples while the term is registered.
    sampled = invoke(runner, "sample", out / "checkpoints" / "last.safetensors", "-n", "2", "--out", tmp_path / "s",
                     "--device", "cpu")
    assert sampled.exit_code == 0, sampled.output


def test_the_term_checks_its_own_config(toy_term):
    with pytest.raises(ConfigError, match="loss.toy.scale"):
        resolve_config("sngan", sets=["loss.toy.weight=1", "loss.toy.scale=20"])
    resolve_config("sngan", sets=["loss.toy.scale=20"])  # off: not checked
    with pytest.raises(ConfigError) as e:  # its keys are strict, with the dotted path and a suggestion
        resolve_config("sngan", sets=["loss.toy.scael=2"])
    assert "loss.toy.scael" in e.value.message and "loss.toy.scale" in e.value.hint
    with pytest.raises(ConfigError, match="'loss.toy.scale'"):
        resolve_config("sngan", sets=["loss.toy.scale=0"])


def test_unregistered_term_is_gone_again():
    assert "toy" not in TERMS
    with pytest.raises(ConfigError, match="unknown config key 'loss.toy'"):
        resolve_config("sngan", sets=["loss.toy.weight=0.5"])
    assert "toy" not in RunConfig.model_json_schema()["$defs"]["LossConfig"]["properties"]


def test_a_term_without_a_config_section_is_refused():
    class Bad(Term):
        name = "bad"
        key = "bad"
        section = dict  # not a TermConfig

    with pytest.raises(TypeError, match="TermConfig"):
        TERMS.register("bad")(Bad)
    assert "bad" not in TERMS
    resolve_config("sngan")  # the config is as before


def test_loss_sections_keep_their_keys_and_defaults():
    # What presets, --set and the configs stored in existing checkpoints rely on.
    assert flatten(config_to_dict(RunConfig())["loss"]) == {
        "adversarial": "hinge",
        "infomax.weight": 0.0, "infomax.rkhs_dim": 1024,
        "cond_2c.weight": 0.0, "cond_2c.temperature": 1.0, "cond_2c.margin": 0.0, "cond_2c.embed_dim": 512,
        "d2d_ce.weight": 0.0, "d2d_ce.temperature": 0.5, "d2d_ce.m_p": 0.98, "d2d_ce.m_n": 0.02,
        "d2d_ce.embed_dim": 512,
        "xmc.weight": 0.0, "xmc.sentence": 1.0, "xmc.word": 1.0, "xmc.image": 1.0, "xmc.image_pretrained": 1.0,
        "xmc.image_encoder": "auto", "xmc.temperature": 0.1, "xmc.word_temperature": 0.02, "xmc.rho1": 5.0,
        "xmc.rho2": 5.0,
        "r1.weight": 0.0, "r1.every": 1,
    }
    schema = RunConfig.model_json_schema()["$defs"]
    assert schema["InfoMaxConfig"]["properties"]["weight"]["description"] == "alpha = beta of InfoMax-GAN; 0 = off."
    assert schema["LossConfig"]["properties"]["adversarial"]["enum"] == ["hinge", "nonsaturating", "dual_contrastive"]
    assert schema["ModelConfig"]["properties"]["arch"]["enum"] == ["sngan", "biggan", "xmcgan"]
    cfg = resolve_config("contragan")
    assert validate_config(json.loads(json.dumps(config_to_dict(cfg)))) == cfg  # as a checkpoint stores it


@pytest.mark.parametrize("key, value, close", [
    ("model.arch", "sngna", "sngan"),
    ("model.arch", "BigGAN", "biggan"),
    ("loss.adversarial", "hinje", "hinge"),
    ("loss.adversarial", "dual_contrastiv", "dual_contrastive"),
    ("text.encoder", "bultin", "builtin"),
])
def test_unknown_names_suggest_the_closest_registered_one(key, value, close):
    with pytest.raises(ConfigError) as e:
        resolve_config("sngan", sets=[f"{key}={value}"])
    assert f"'{key}'" in e.value.message and value in e.value.message
    assert f"did you mean '{close}'?" in e.value.hint and close in e.value.hint.split("valid names: ")[1]


def test_unknown_arch_from_the_cli_names_the_key(runner):
    result = invoke(runner, "config", "show", "--set", "model.arch=sngn")
    assert result.exit_code == 2, result.output
    assert "model.arch" in result.output and "did you mean 'sngan'?" in result.output
    assert "Traceback" not in result.output


def test_one_did_you_mean_helper():
    from cgantool.config import _did_you_mean  # the name other modules import from the config
    from cgantool.registry import did_you_mean

    assert _did_you_mean is did_you_mean
    assert did_you_mean("contragn", ["contragan", "sngan"]) == "did you mean 'contragan'? "
    assert did_you_mean("zzz", ["contragan"]) == ""
