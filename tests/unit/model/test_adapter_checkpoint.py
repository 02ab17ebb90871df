"""Adapter files: both layouts load with strict checks; bad files fail naming the file and the key."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from beyond_monologue.errors import BMInputError
from beyond_monologue.model import infinitetalk
from beyond_monologue.model.adapter_checkpoint import (
    META_CONFIG,
    check_compatible,
    load_adapter,
    save_adapter,
    smoke_config,
    smoke_state_dict,
)
from beyond_monologue.model.duplex_adapter import DuplexAdapter
from beyond_monologue.model.mhgk import MHGKKernel, kernel_times
from beyond_monologue.model.time_rope import TimeRoPE


def _write(tmp_path, sd, meta=None, name="adapter.safetensors"):
    path = tmp_path / name
    save_file(sd, str(path), metadata=meta)
    return path


@pytest.mark.parametrize(("layout", "dtype"), [("beyond_monologue", torch.bfloat16), ("infinitetalk", torch.float16)])
def test_smoke_weights_load_in_their_layout_and_are_marked_untrained(tmp_path, layout, dtype):
    sd, meta = smoke_state_dict(layout, seed=7, model_dim=256, num_layers=2)
    assert {v.dtype for v in sd.values()} == {dtype}
    assert meta["bm_trained"] == "false"
    adapter = load_adapter(_write(tmp_path, sd, meta))
    assert adapter.config.layout == layout and not adapter.config.trained
    assert next(adapter.parameters()).dtype == dtype
    outputs = [p for n, p in adapter.named_parameters() if n.endswith((".o.weight", ".o.bias"))]
    assert outputs and all(torch.count_nonzero(p) == 0 for p in outputs)
    again, _ = smoke_state_dict(layout, seed=7, model_dim=256, num_layers=2)
    assert all(torch.equal(again[k], sd[k]) for k in sd)


def test_infinitetalk_file_with_public_key_names_loads_every_key(tmp_path):
    """Scaled public layout: 3 blocks of dim 256, 3 wav2vec layers of 16 channels, 4 tokens of 64."""
    cfg = smoke_config("infinitetalk", model_dim=256, num_layers=3, audio_layers=3, audio_dim=16)
    source = DuplexAdapter(cfg).reset_parameters(seed=4, zero_output=False)
    public = {k: v.half() for k, v in infinitetalk.from_internal(source.state_dict()).items()}
    assert sorted({k.split(".")[0] for k in public}) == ["audio_proj", "blocks"]
    assert "blocks.2.audio_cross_attn.kv_linear.weight" in public and "blocks.2.norm_x.bias" in public
    adapter = load_adapter(_write(tmp_path, public), audio_layers=3)
    cfg = adapter.config
    assert (cfg.model_dim, cfg.num_layers, cfg.num_heads, cfg.streams, cfg.qk_norm) == (256, 3, 2, ("talk",), False)
    assert cfg.kernel("talk") == MHGKKernel.frame_local(2) and cfg.trained
    for key, value in infinitetalk.to_internal(public).items():
        assert torch.equal(adapter.state_dict()[key], value), key


def test_layout_a_round_trip_keeps_config_and_kernels(tmp_path):
    cfg = smoke_config("beyond_monologue", model_dim=256, num_layers=2)
    custom = {"talk": MHGKKernel((0.0, 0.1), (float("inf"), 3.0)), "listen": MHGKKernel.global_(2)}
    adapter = DuplexAdapter(type(cfg)(**{**cfg.__dict__, "kernels": custom, "trained": True})).reset_parameters(2, False)
    path = tmp_path / "bm.safetensors"
    save_adapter(adapter, path)
    loaded = load_adapter(path)
    assert loaded.config == adapter.config
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in adapter.state_dict().items())


def test_layout_a_without_kernels_uses_the_default_schedule(tmp_path):
    sd, meta = smoke_state_dict("beyond_monologue", seed=0)
    body = json.loads(meta[META_CONFIG])
    del body["mhgk"]
    loaded = load_adapter(_write(tmp_path, sd, {**meta, META_CONFIG: json.dumps(body)}))
    heads = loaded.config.num_heads
    assert loaded.config.kernels == {}
    assert loaded.config.kernel("talk") == MHGKKernel.default("talk", heads)
    assert loaded.config.kernel("listen") == MHGKKernel.default("listen", heads)


def test_truncated_or_foreign_files_name_the_file(tmp_path):
    sd, meta = smoke_state_dict("beyond_monologue", seed=0)
    path = _write(tmp_path, sd, meta, "broken.safetensors")
    path.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(BMInputError, match=r"adapter file 'broken.safetensors'.*not a readable safetensors file"):
        load_adapter(path)
    with pytest.raises(BMInputError, match=r"'gone.safetensors' was not found"):
        load_adapter(tmp_path / "gone.safetensors")
    wan = _write(tmp_path, {"patch_embedding.weight": torch.zeros(4, 4), "head.modulation": torch.zeros(1)}, None, "wan.safetensors")
    with pytest.raises(BMInputError, match=r"wan.safetensors.*whole Wan model"):
        load_adapter(wan)


@pytest.mark.parametrize("layout", ["beyond_monologue", "infinitetalk"])
def test_missing_unused_or_misshapen_keys_are_named(tmp_path, layout):
    sd, meta = smoke_state_dict(layout, seed=0)
    victim = sorted(k for k in sd if k.startswith("blocks.1."))[0]
    cases = {
        "missing": ({k: v for k, v in sd.items() if k != victim}, f"is missing key '{victim}'"),
        "unused": ({**sd, "blocks.9.extra.weight": torch.zeros(2)}, "has unexpected key 'blocks.9.extra.weight'"),
        "shape": ({**sd, victim: torch.zeros(3, dtype=sd[victim].dtype)}, f"key '{victim}' has shape \\(3,\\)"),
    }
    for name, (broken, message) in cases.items():
        with pytest.raises(BMInputError, match=f"adapter file '{name}.safetensors': {message}"):
            load_adapter(_write(tmp_path, broken, meta or None, f"{name}.safetensors"))


def test_infinitetalk_file_without_its_last_projection_names_that_key(tmp_path):
    sd, _ = smoke_state_dict("infinitetalk", seed=0)
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    key = f"blocks.{last}.audio_cross_attn.proj.weight"
    broken = {k: v for k, v in sd.items() if k != key}
    with pytest.raises(BMInputError, match=f"is missing key '{key}'"):
        load_adapter(_write(tmp_path, broken, None, "no_last_proj.safetensors"))


def test_bad_metadata_is_reported(tmp_path):
    sd, meta = smoke_state_dict("beyond_monologue", seed=0)
    with pytest.raises(BMInputError, match="unreadable 'bm_adapter_config'"):
        load_adapter(_write(tmp_path, sd, {**meta, META_CONFIG: json.dumps({"model_dim": 3})}))
    with pytest.raises(BMInputError, match="format version '9'"):
        load_adapter(_write(tmp_path, sd, {**meta, "bm_format_version": "9"}))


def test_adapter_for_another_dit_is_refused_with_both_names():
    cfg = smoke_config("infinitetalk", model_dim=5120, num_layers=40)
    with pytest.raises(BMInputError, match=r"Wan2.1/2.2-14B.*MODEL is Wan2.2-TI2V-5B"):
        check_compatible(cfg, 3072, 30, 24, "adapter file 'x.safetensors'")


def test_saved_smoke_file_reads_back_with_safetensors(tmp_path):
    sd, meta = smoke_state_dict("infinitetalk", seed=1)
    path = _write(tmp_path, sd, meta)
    assert set(load_file(str(path))) == set(sd)


def _format_1_file(tmp_path, rope_in_body=False):
    """A file exactly as format 1 wrote it: version "1" and no "rope" in the config."""
    sd, meta = smoke_state_dict("beyond_monologue", seed=3, zero_output=False)
    body = json.loads(meta[META_CONFIG])
    body.pop("rope", None)
    if rope_in_body:
        body["rope"] = TimeRoPE(rotary_dims=16).to_dict()
    return _write(tmp_path, sd, {**meta, "bm_format_version": "1", META_CONFIG: json.dumps(body)}, "v1.safetensors")


def test_format_1_files_load_with_rope_off_and_compute_as_before(tmp_path):
    loaded = load_adapter(_format_1_file(tmp_path))
    assert loaded.config.rope is None
    no_rope = DuplexAdapter(type(loaded.config)(**{**loaded.config.__dict__})).to(torch.bfloat16)
    no_rope.load_state_dict(loaded.state_dict())
    x, tokens = torch.randn(1, 3 * 4, 256, dtype=torch.bfloat16), torch.randn(1, 3 * 4, 64, dtype=torch.bfloat16)
    q_times, k_times = kernel_times(3, 3, 25.0)
    table = loaded.config.kernel("talk").bias_table(q_times, k_times)
    assert torch.equal(loaded.residual(0, "talk", x, tokens, table, "grouped"),
                       loaded.residual(0, "talk", x, tokens, table, "grouped", rope=None))
    with pytest.raises(BMInputError, match="rope"):
        load_adapter(_format_1_file(tmp_path, rope_in_body=True))


def test_format_2_round_trip_keeps_the_rope_and_the_rope_changes_the_residual(tmp_path):
    cfg = smoke_config("beyond_monologue", model_dim=256, num_layers=2)
    rope = TimeRoPE(rotary_dims=64, min_period_s=0.5, max_period_s=32.0)
    adapter = DuplexAdapter(type(cfg)(**{**cfg.__dict__, "rope": rope})).reset_parameters(5, zero_output=False)
    path = tmp_path / "v2.safetensors"
    save_adapter(adapter, path)
    loaded = load_adapter(path)
    assert loaded.config.rope == rope and loaded.config == adapter.config
    x, tokens = torch.randn(1, 3 * 4, 256), torch.randn(1, 3 * 4, 64)
    q_times, k_times = kernel_times(3, 3, 25.0, 2, 0)
    table = cfg.kernel("listen").bias_table(q_times, k_times)
    with torch.no_grad():
        plain = adapter.residual(1, "listen", x, tokens, table, "grouped")
        rotated = adapter.residual(1, "listen", x, tokens, table, "grouped", rope=rope.tables(q_times, k_times))
    assert (plain - rotated).abs().max() > 1e-4
