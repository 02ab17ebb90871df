"""The training step and loop on a tiny native Wan2.2 model: gradients reach what should learn, nothing else moves."""

import pytest
import torch
from wan_fixtures import tiny_wan

LATENTS, SIZE = 5, 8  # 17 frames


def _sample(bm, seed, latents=LATENTS, size=SIZE, text_tokens=8):
    g = torch.Generator().manual_seed(seed)
    frames = 4 * (latents - 1) + 1
    audio = bm.audio.duplex_audio.DuplexAudio(torch.randn(frames, 12, 768, generator=g), torch.randn(frames, 12, 768, generator=g),
                                              torch.ones(frames), torch.ones(frames), fps=25.0)
    return bm.train.samples.TrainingSample(torch.randn(48, latents, size, size, generator=g) * 0.5,
                                           torch.randn(48, 1, size, size, generator=g) * 0.5, audio,
                                           torch.randn(text_tokens, 4096, generator=g), f"clip{seed}")


@pytest.fixture(scope="module")
def bm(pack):
    import importlib

    for name in ("samples", "recipe", "step", "trainer"):
        importlib.import_module(f"{pack.__name__}.beyond_monologue.train.{name}")
    return pack.beyond_monologue


def _adapter(bm, seed=1):
    cfg = bm.model.adapter_checkpoint.smoke_config("beyond_monologue", model_dim=256, num_layers=2)
    return bm.model.duplex_adapter.DuplexAdapter(cfg).reset_parameters(seed, zero_output=True).float()


def test_one_run_trains_every_part_of_the_adapter_and_keeps_the_base_frozen(bm):
    model = tiny_wan("wan22_5b")
    base_before = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    training_set = bm.train.samples.TrainingSet().extended([_sample(bm, i) for i in range(2)])
    recipe = bm.train.recipe.TrainRecipe(steps=3, batch_size=4, lr_new=1e-3, ema_decay=0.0, seed=0,
                                         dropout_talk=0.5, dropout_listen=0.5)
    start = _adapter(bm)
    seen = []
    result = bm.train.trainer.train_adapter(model, training_set, recipe, adapter=start, on_step=lambda *a: seen.append(a))
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)] and len(result.losses) == 3
    assert all(torch.isfinite(torch.tensor(result.losses)))
    trained = result.trained.adapter
    assert trained.config.trained and not start.config.trained  # the input adapter is never changed
    moved = {k for k, v in trained.state_dict().items() if not torch.equal(v, start.state_dict()[k])}
    for part in ("encoders.talk.queries", "encoders.listen.null_tokens", "blocks.0.talk.o.weight", "blocks.1.listen.q.weight"):
        assert part in moved, part
    after = model.model.diffusion_model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base_before.items())
    assert result.trained.metadata["bm_train_steps"] == "3" and result.trained.metadata["bm_train_stage"] == "both"


def test_stage_one_trains_talking_only(bm):
    model = tiny_wan("wan22_5b")
    training_set = bm.train.samples.TrainingSet().extended([_sample(bm, 0)])
    recipe = bm.train.recipe.TrainRecipe(stage="talking", steps=2, lr_new=1e-3, ema_decay=0.9, seed=1)
    start = _adapter(bm)
    trained = bm.train.trainer.train_adapter(model, training_set, recipe, adapter=start).trained.adapter
    state = trained.state_dict()
    listen = [k for k in state if k.startswith("encoders.listen.") or ".listen." in k]
    talk = [k for k in state if k.startswith("encoders.talk.") or ".talk." in k]
    assert listen and all(torch.equal(state[k], start.state_dict()[k]) for k in listen)
    assert any(not torch.equal(state[k], start.state_dict()[k]) for k in talk)


def test_plans_cover_the_recipe_cases(bm):
    recipe = bm.train.recipe.TrainRecipe(window_latents=4, df_probability=0.5, clean_prefix_probability=0.5,
                                         guide_probability=0.5, dropout_talk=0.5, dropout_listen=0.5, dropout_text=0.5)
    g = torch.Generator().manual_seed(0)
    plans = [bm.train.step.plan_step(_sample(bm, 0, latents=6), recipe, g, ("talk", "listen")) for _ in range(200)]
    assert {p.num_latents for p in plans} == {4} and {p.first_latent for p in plans} == {0, 1, 2}
    assert any(len(set(p.percents)) > 2 for p in plans) and any(len(set(p.percents)) == 1 for p in plans)
    assert any(p.percents[0] == 1.0 for p in plans) and all(min(p.percents) < 1.0 for p in plans)
    assert {p.guide_index for p in plans} == {None, 0, 1, 2, 3, 4}
    assert {p.modes["talk"] for p in plans} == {"on", "null"} and {p.drop_text for p in plans} == {True, False}
    talking = bm.train.recipe.TrainRecipe(stage="talking")
    assert bm.train.step.plan_step(_sample(bm, 0), talking, g, ("talk", "listen")).modes["listen"] == "off"


def test_bad_sets_and_recipes_name_the_input(bm):
    errors = bm.errors
    model = tiny_wan("wan22_5b")
    with pytest.raises(errors.BMInputError, match=r"training_set.*empty"):
        bm.train.trainer.train_adapter(model, bm.train.samples.TrainingSet(), bm.train.recipe.TrainRecipe(steps=1),
                                       adapter=_adapter(bm))
    with pytest.raises(errors.BMInputError, match=r"^steps"):
        bm.train.recipe.TrainRecipe(steps=0)
    wan21 = tiny_wan("wan21_i2v")
    with pytest.raises(errors.BMInputError, match=r"training_set.*16"):
        bm.train.trainer.train_adapter(wan21, bm.train.samples.TrainingSet().extended([_sample(bm, 0)]),
                                       bm.train.recipe.TrainRecipe(steps=1), adapter=_adapter(bm))
    with pytest.raises(errors.BMInputError, match=r"sample.*text_dim"):
        bm.train.samples.TrainingSet().extended([_sample(bm, 0), bm.train.samples.TrainingSample(
            torch.zeros(48, 2, 8, 8), torch.zeros(48, 1, 8, 8), _sample(bm, 1, latents=2).audio, torch.zeros(4, 512))])


def test_a_set_round_trips_through_its_file(bm, tmp_path):
    samples = bm.train.samples
    original = samples.TrainingSet().extended([_sample(bm, 0), _sample(bm, 1, latents=3, size=4)])
    samples.save_set(original, tmp_path / "set.safetensors")
    loaded = samples.load_set(tmp_path / "set.safetensors")
    assert len(loaded) == 2 and loaded.signature() == original.signature()
    for a, b in zip(original.samples, loaded.samples, strict=True):
        assert torch.equal(a.latents, b.latents) and torch.equal(a.text, b.text) and a.source == b.source
        assert torch.allclose(a.audio.talk, b.audio.talk, atol=2e-3, rtol=1e-3)  # features stored as float16
    (tmp_path / "other.safetensors").write_bytes(b"not a set")
    with pytest.raises(bm.errors.BMInputError, match="cannot be read"):
        samples.load_set(tmp_path / "other.safetensors")
