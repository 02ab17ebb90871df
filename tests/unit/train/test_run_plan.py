"""--dry-run's plan: the memory arithmetic of docs/TRAINING.md, from file headers only."""

import dataclasses

import torch
from safetensors.torch import save_file

from beyond_monologue.train.run_config import parse_config
from beyond_monologue.train.run_plan import ModelFacts, adapter_parameters, memory_estimate, read_model_facts

WAN22_5B = ModelFacts(parameters=5_000_000_000, bytes_per_parameter=2, dim=3072, layers=30, ffn_dim=14336)
SIGNATURE = {"audio_layers": 12, "audio_dim": 768, "context_frames": 2}


def test_a_wan22_5b_adapter_run_fits_an_80_gb_gpu_only_with_checkpointing():
    adapter = adapter_parameters(WAN22_5B, SIGNATURE)
    assert 1.44e9 < adapter < 1.50e9  # 30 blocks x 2 streams x (2 x 3072^2 + 2 x 3072 x 768) + Q-Formers
    config = parse_config({"model": "m", "training_sets": ["a"], "output": "o", "preset": "talking"})
    tokens = 32 * 22 * 40  # 31 latent frames of 704x1280 plus the guide latent
    memory = memory_estimate(config, WAN22_5B, adapter, tokens)
    assert abs(memory["adapter_training"] - adapter * 20 / 2**30) < 1e-9 and 9 < memory["backbone"] < 10
    assert 40 < memory["total"] < 60
    assert memory_estimate(dataclasses.replace(config, checkpointing=False), WAN22_5B, adapter, tokens)["total"] > 80


def test_training_the_5b_backbone_fits_80_gb_only_sharded_over_8_gpus():
    adapter = adapter_parameters(WAN22_5B, SIGNATURE)
    config = parse_config({"model": "m", "training_sets": ["a"], "output": "o", "preset": "talking",
                           "recipe": {"lr_backbone": 2e-6}})
    tokens = 32 * 22 * 40
    one = memory_estimate(config, WAN22_5B, adapter, tokens, world=1, trained_backbone=WAN22_5B.parameters)
    eight = memory_estimate(config, WAN22_5B, adapter, tokens, world=8, trained_backbone=WAN22_5B.parameters)
    assert abs(one["backbone_training"] - 5e9 * 16 / 2**30) < 1e-6 and one["total"] > 120
    assert abs(eight["backbone_training"] * 8 - one["backbone_training"]) < 1e-6 and 20 < eight["total"] < 40


def test_model_facts_come_from_the_header(tmp_path):
    sd = {"model.diffusion_model.patch_embedding.weight": torch.zeros(8, 48, 1, 2, 2, dtype=torch.bfloat16),
          "model.diffusion_model.blocks.0.ffn.0.weight": torch.zeros(16, 8, dtype=torch.bfloat16),
          "model.diffusion_model.blocks.1.ffn.0.weight": torch.zeros(16, 8, dtype=torch.bfloat16)}
    save_file(sd, str(tmp_path / "m.safetensors"))
    facts = read_model_facts(str(tmp_path / "m.safetensors"))
    assert facts == ModelFacts(8 * 48 * 4 + 2 * 16 * 8, 2, 8, 2, 16)
