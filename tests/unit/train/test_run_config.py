"""The torchrun config: presets are the paper's stages, every bad key is refused by name."""

import pytest

from beyond_monologue.errors import BMInputError
from beyond_monologue.train.run_config import load_config, parse_config

BASE = {"model": "wan.safetensors", "training_sets": ["a.safetensors"], "output": "run"}


def test_presets_are_the_paper_stages_and_overrides_win(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('model = "wan.safetensors"\ntraining_sets = ["a.safetensors", "b.safetensors"]\noutput = "s1"\n'
                    'preset = "talking"\ncheckpoint_every = 50\n[recipe]\nsteps = 7\nlr_new = 1\n')
    config = load_config(path)
    assert config.recipe.stage == "talking" and config.recipe.steps == 7 and config.recipe.lr_new == 1.0
    assert config.global_batch == 32 and config.recipe.batch_size == 32 and config.recipe.grad_accumulation == 1
    assert config.recipe.ema_decay == 0.999 and config.training_dtype == "bfloat16" and config.checkpoint_every == 50
    assert config.training_sets == ("a.safetensors", "b.safetensors")
    both = parse_config({**BASE, "preset": "both"})
    assert both.recipe.stage == "both" and both.recipe.steps == 30_000
    assert config.check_world_size(16) == 2 and config.check_world_size(1) == 32


@pytest.mark.parametrize(("data", "key"), [
    ({**BASE, "learning_rate": 1e-5}, "learning_rate"),
    ({**BASE, "recipe": {"lr": 1.0}}, "recipe.lr"),
    ({**BASE, "recipe": {"batch_size": 4}}, "recipe.batch_size"),
    ({**BASE, "recipe": {"stage": "listening"}}, "recipe.stage"),
    ({**BASE, "recipe": {"steps": "10"}}, "recipe.steps"),
    ({**BASE, "preset": "stage3"}, "preset"),
    ({**BASE, "global_batch": 0}, "global_batch"),
    ({**BASE, "training_dtype": "fp8"}, "training_dtype"),
    ({**BASE, "output": "../elsewhere"}, "output"),
    ({**BASE, "training_sets": []}, "training_sets"),
    ({"training_sets": ["a"], "output": "run"}, "model"),
    ({**BASE, "parallelism": "zero3"}, "parallelism"),
    ({**BASE, "parallelism": "ddp", "recipe": {"lr_backbone": 2e-6}}, "parallelism"),
    ({**BASE, "backbone_parameters": []}, "backbone_parameters"),
    ({**BASE, "backbone_parameters": "blocks.*"}, "backbone_parameters"),
])
def test_bad_configs_name_the_key(data, key):
    with pytest.raises(BMInputError) as err:
        parse_config(data)
    assert err.value.input_name == key


def test_a_world_size_that_does_not_divide_the_batch_is_refused(tmp_path):
    config = parse_config({**BASE, "global_batch": 6})
    with pytest.raises(BMInputError, match=r"global_batch.*4 processes"):
        config.check_world_size(4)
    (tmp_path / "bad.toml").write_text("model = [")
    with pytest.raises(BMInputError, match=r"^config"):
        load_config(tmp_path / "bad.toml")


def test_backbone_training_chooses_fsdp2_and_adapter_only_runs_ddp():
    assert parse_config(BASE).engine == "ddp"
    backbone = parse_config({**BASE, "recipe": {"lr_backbone": 2e-6}})
    assert backbone.engine == "fsdp" and backbone.backbone_parameters == ("*",)
    chosen = parse_config({**BASE, "parallelism": "fsdp", "backbone_parameters": ["blocks.*.cross_attn.*"]})
    assert chosen.engine == "fsdp" and chosen.backbone_parameters == ("blocks.*.cross_attn.*",)
