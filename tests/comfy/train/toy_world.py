"""A toy world in which talking and listening can be learned and measured in seconds on a CPU.

Videos are latent videos (48 channels, 8 x 8, Wan2.2 layout) of a fixed random "face" pattern in which
one region, the **mouth**, follows the loudness of the talk stream frame by frame and another, the
**head**, follows the loudness of the listen stream smoothed over one second. The speech is real:
the LibriVox clips of Debian's pocketsphinx-testdata and the two speakers of pyannote's sample.wav,
encoded by a full-size wav2vec2 base with random weights (its features carry loudness: a ridge
regression from one layer predicts held-out loudness with r ~ 0.89).

The backbone is a tiny Wan2.2-shaped DiT (``wan_fixtures.tiny_wan``: the real block structure, 256
wide, 2 blocks) first taught the unconditional world (pattern plus mouth and head moving at random,
unrelated to any audio), as a real Wan model knows faces before an adapter is trained; it is frozen
afterwards. The adapter then has to learn exactly what it is for: which region follows which stream.

Measures (``region_signal``): the mean of a generated region projected on its direction, per latent
frame, against the stream's loudness per latent frame (Pearson r), pooled over many held-out
conversations rendered with different seeds (a single 16-latent render gives chance |r| of 0.3 and
more for the slow head signal).

Every function that touches the pack takes ``bm``, the pack's ``beyond_monologue`` package (``pack.beyond_monologue``
in the comfy tier, the plain package in ``bench/train_toy.py``), whose stage modules are imported by :func:`modules`.
"""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace

import numpy as np
import torch

FPS = 25.0
SIZE = 8  # latent pixels (4 x 4 DiT tokens)
CHANNELS = 48
MOUTH = (slice(4, 8), slice(0, 8))  # latent rows / cols: the lower half
HEAD = (slice(0, 4), slice(0, 8))  # the upper half
AMPLITUDE = 1.0  # per channel, in model space (the pattern's std is 0.5)
SMOOTH_FRAMES = 25  # the head follows one second of listening


def frame_loudness(wave: np.ndarray, rate: int, frames: int) -> np.ndarray:
    """Loudness per video frame in 0..1: RMS in dB over each frame's samples, -50..-10 dB mapped to 0..1."""
    hop = rate / FPS
    out = np.zeros(frames, np.float32)
    for f in range(frames):
        chunk = wave[int(f * hop):int((f + 1) * hop)]
        rms = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) if len(chunk) else 0.0
        out[f] = np.clip((20 * math.log10(rms + 1e-6) + 50) / 40, 0, 1)
    return out


def smoothed(values: np.ndarray, width: int = SMOOTH_FRAMES) -> np.ndarray:
    """Trailing moving average over the last ``width`` frames (a reaction to what was heard; the first frames
    average what exists)."""
    kernel = np.ones(width) / width
    padded = np.pad(values, (width - 1, 0), mode="edge")
    return np.convolve(padded, kernel, mode="valid").astype(np.float32)


def per_latent(values: np.ndarray) -> np.ndarray:
    """Per-frame values -> per latent frame (latent 0 = frame 0, latent t = frames 4t-3 .. 4t)."""
    frames = len(values)
    latents = (frames - 1) // 4 + 1
    return np.array([values[0]] + [values[4 * t - 3:4 * t + 1].mean() for t in range(1, latents)], np.float32)


class World:
    """The fixed pattern and the region directions (seeded), and videos made from loudness."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.pattern = torch.randn(CHANNELS, SIZE, SIZE, generator=g) * 0.5
        self.mouth_dir = torch.randint(0, 2, (CHANNELS,), generator=g).float() * 2 - 1  # +-1 per channel
        self.head_dir = torch.randint(0, 2, (CHANNELS,), generator=g).float() * 2 - 1

    def video(self, mouth: np.ndarray, head: np.ndarray) -> torch.Tensor:
        """Model-space latent video ``[C, T, 8, 8]``; ``mouth`` / ``head`` per latent frame in 0..1."""
        t = len(mouth)
        x = self.pattern[:, None].repeat(1, t, 1, 1).clone()
        m = torch.tensor(mouth * 2 - 1).view(1, t, 1, 1) * AMPLITUDE
        h = torch.tensor(head * 2 - 1).view(1, t, 1, 1) * AMPLITUDE
        x[:, :, MOUTH[0], MOUTH[1]] += m * self.mouth_dir.view(-1, 1, 1, 1)
        x[:, :, HEAD[0], HEAD[1]] += h * self.head_dir.view(-1, 1, 1, 1)
        return x

    def reference(self) -> torch.Tensor:
        """Model-space ``[C, 1, 8, 8]``: the face at rest (mouth and head at their middle value)."""
        return self.pattern[:, None].clone()

    @staticmethod
    def level(signal: np.ndarray) -> np.ndarray:
        """A region signal back on the 0..1 scale :meth:`video` was given (clipped): 0 at rest, 1 at full movement."""
        return np.clip((np.asarray(signal) / AMPLITUDE + 1.0) / 2.0, 0.0, 1.0)

    def region_signal(self, video: torch.Tensor, region: str) -> np.ndarray:
        """Per latent frame: a model-space video's region (``"mouth"`` / ``"head"``) projected on its direction."""
        rows, cols = MOUTH if region == "mouth" else HEAD
        direction = self.mouth_dir if region == "mouth" else self.head_dir
        part = (video[:, :, rows, cols] - self.pattern[:, None, rows, cols]).mean(dim=(2, 3))  # [C, T]
        return (direction @ part / CHANNELS).numpy()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally long series (0 when either is constant)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() < 1e-12 or b.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def pretrain_backbone(model, world: World, steps: int = 300, latents: int = 6, batch: int = 4, lr: float = 1e-3,
                      seed: int = 0) -> list[float]:
    """Teach the tiny DiT the unconditional world (flow matching; mouth/head at random), then freeze it.

    Test-world set-up, not the pack's trainer: the pack trains adapters only. Returns the losses.
    """
    dm = model.model.diffusion_model
    sampling = model.get_model_object("model_sampling")
    g = torch.Generator().manual_seed(seed)
    context = torch.zeros(batch, 8, 4096)
    params = [p for p in dm.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    losses = []
    for _ in range(steps):
        videos = []
        for _ in range(batch):
            mouth = torch.rand(latents, generator=g).numpy()
            head = np.repeat(torch.rand((latents + 2) // 3, generator=g).numpy(), 3)[:latents]
            videos.append(world.video(mouth, head))
        x0 = torch.stack(videos)
        sigma = torch.tensor([sampling.percent_to_sigma(float(u)) for u in torch.rand(batch, generator=g)])
        noise = torch.randn(x0.shape, generator=g)
        x_t = sampling.noise_scaling(sigma, noise, x0)
        v = dm(x_t, sampling.timestep(sigma), context)
        loss = (v - (noise - x0)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    for p in params:
        p.requires_grad_(False)
    return losses


def modules(bm_package: str) -> SimpleNamespace:
    """The pack's modules this world uses, from the package named ``bm_package`` (``<pack>.beyond_monologue``)."""
    names = {"features": "audio.speech_features", "duplex_audio": "audio.duplex_audio", "samples": "train.samples",
             "recipe": "train.recipe", "trainer": "train.trainer", "guidance": "sampling.guidance",
             "long_video": "sampling.long_video", "reference": "sampling.reference", "wan_patch": "model.wan_patch",
             "duplex_adapter": "model.duplex_adapter", "checkpoint": "model.adapter_checkpoint",
             "listening": "evaluate.listening"}
    return SimpleNamespace(**{k: importlib.import_module(f"{bm_package}.{v}") for k, v in names.items()})


def encode_sources(bm, encoder_model, waves: list[np.ndarray], rate: int = 16000) -> list[tuple[torch.Tensor, np.ndarray]]:
    """Each whole recording -> (wav2vec2 features per video frame ``[F, 12, 768]``, loudness per frame ``[F]``)."""
    out = []
    for wave in waves:
        frames = int(len(wave) / rate * FPS)
        frames = frames - (frames - 1) % 4
        with torch.no_grad():
            features = bm.features.wav2vec2_frame_features(encoder_model, torch.as_tensor(wave), frames,
                                                           "conv_features", "cpu")
        out.append((features.float(), frame_loudness(wave, rate, frames)))
    return out


def cut(source: tuple, start: int, frames: int) -> tuple[torch.Tensor, np.ndarray]:
    """``(features, loudness)`` of frames ``start .. start + frames - 1`` of an encoded recording."""
    features, loud = source[:2]
    return features[start:start + frames], loud[start:start + frames]


def conversation(bm, talk: tuple[torch.Tensor, np.ndarray], listen: tuple[torch.Tensor, np.ndarray]):
    """``(DuplexAudio, talk loudness, smoothed listen loudness, listen loudness)`` of two cut streams (per latent)."""
    frames = talk[0].shape[0]
    ones = torch.ones(frames)
    audio = bm.duplex_audio.DuplexAudio(talk[0], listen[0], ones, ones, fps=FPS)
    return audio, per_latent(talk[1]), per_latent(smoothed(listen[1])), per_latent(listen[1])


def conversations(bm, sources: list, count: int, frames: int, seed: int) -> list:
    """``count`` conversations of ``frames`` frames: talk and listen cut at random from two recordings of
    different groups (:func:`split_sources`), so that the two streams are independent."""
    g = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < count:
        a, b = torch.randperm(len(sources), generator=g)[:2].tolist()
        if sources[a][2] == sources[b][2]:
            continue
        starts = [int(torch.randint(0, sources[k][0].shape[0] - frames + 1, (), generator=g)) for k in (a, b)]
        out.append(conversation(bm, cut(sources[a], starts[0], frames), cut(sources[b], starts[1], frames)))
    return out


def training_set(bm, world: World, model, sources: list, clips: int, frames: int, seed: int = 0):
    """``clips`` training samples (BM Training Sample's type) of the world's videos for random conversations."""
    reference = model.model.process_latent_out(world.reference()[None])[0]
    samples = []
    for i, (audio, mouth, head, _) in enumerate(conversations(bm, sources, clips, frames, seed)):
        latents = model.model.process_latent_out(world.video(mouth, head)[None])[0]
        samples.append(bm.samples.TrainingSample(latents.float(), reference.float(), audio, torch.zeros(8, 4096),
                                                 f"toy {i}"))
    return bm.samples.TrainingSet().extended(samples)


def render(bm, patched, world: World, audio, seed: int = 0, steps: int = 8, window_latents: int = 11) -> torch.Tensor:
    """BM Sampler's engine (no guidance: every scale 1) on one conversation -> model-space video ``[C, T, 8, 8]``."""
    base = patched.model
    reference = bm.reference.Reference("past_end", base.process_latent_out(world.reference()[None]).float())
    text = [[torch.zeros(1, 8, 4096), {}]]
    settings = bm.long_video.SamplingSettings(steps=steps, sampler_name="euler", scheduler="simple", seed=seed,
                                              scales=bm.guidance.GuidanceScales(1.0, 1.0, 1.0),
                                              window_latents=window_latents, motion_latents=3)
    video = bm.long_video.sample_long_video(patched, text, text, audio, reference, settings)
    return base.process_latent_in(video)[0]


def measure(bm, model, adapter, world: World, talks: list, listen_strength: float = 1.0, seed: int = 100) -> dict:
    """Render every conversation (seed ``seed + i``) with ``adapter`` attached to ``model``; pooled Pearson r.

    Returns ``{"mouth~talk", "head~listen", "mouth~listen", "head~talk"}`` -> r over all latent frames of
    all conversations (generated region signal vs target loudness), and ``"listening"``: the evaluation
    stage's listening metrics (``beyond_monologue.evaluate.listening``) of the renders on the latent
    clock (6.25 latent frames per second), with the streams' loudness as voice activity and the
    regions' levels (:meth:`World.level`, 0 = at rest, 1 = full) as head motion and mouth activity:
    in this world a region's level is the amplitude of its movement (an 8x8 latent at 6.25 frames per
    second cannot show the nod or the lip movement itself), so it stands where a real face track's
    motion and mouth activity stand. (Their speed, the level's change per second, does not work here:
    the head level follows the smoothed listen loudness and changes most when listening starts and
    ends, and the mouth's speed peaks at the edges of speech, which the activity threshold counts as
    listen-only.)
    """
    import comfy.model_management as mm
    import comfy.model_patcher

    patcher = comfy.model_patcher.ModelPatcher(adapter, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    settings = bm.wan_patch.AdapterSettings({s: adapter.config.kernel(s) for s in adapter.streams},
                                            {"talk": 1.0, "listen": listen_strength})
    patched = bm.wan_patch.attach_duplex_adapter(model, patcher, settings)
    series = {"mouth": [], "head": [], "talk": [], "listen": [], "talk_active": [], "listen_active": []}
    latent_fps = FPS / 4
    for i, (audio, talk, listen, listen_now) in enumerate(talks):
        video = render(bm, patched, world, audio, seed=seed + i)
        mouth, head = world.region_signal(video, "mouth"), world.region_signal(video, "head")
        series["mouth"].append(mouth)
        series["head"].append(head)
        series["talk"].append(talk)
        series["listen"].append(listen)
        series["talk_active"].append(talk)
        series["listen_active"].append(listen_now)
    s = {k: np.concatenate(v) for k, v in series.items()}
    out = {f"{region}~{stream}": pearson(s[region], s[stream]) for region in ("mouth", "head")
           for stream in ("talk", "listen")}
    out["listening"] = bm.listening.listening_metrics(World.level(s["head"]), World.level(s["mouth"]), s["talk_active"],
                                                      s["listen_active"], latent_fps)
    return out


def split_sources(bm, encoder_model, books: list[np.ndarray], speakers: list[np.ndarray], rate: int = 16000):
    """Encoded training and held-out recordings ``(features, loudness, group)``.

    Training: LibriVox clips 0-3 and the first 20 s of each sample.wav speaker; held out (speech never
    seen in training): LibriVox clip 4 and the rest of each speaker. The two speakers of one conversation
    take turns (one is silent while the other speaks), so they share a group and are never paired: a talk
    stream would then predict the listen stream. Time-reversed copies of the speakers (the same loudness
    statistics without the turn-taking) are a group of their own, which gives the held-out set enough
    independent pairs.
    """
    cut_at = rate * 20

    def encode(waves, groups):
        encoded = encode_sources(bm, encoder_model, waves, rate)
        return [(features, loud, group) for (features, loud), group in zip(encoded, groups, strict=True)]

    def with_reversed(parts):
        return [*parts, *(part[::-1].copy() for part in parts)]

    train = encode([*books[:4], *with_reversed([s[:cut_at] for s in speakers])],
                   ["book 0", "book 1", "book 2", "book 3", "conversation", "conversation", "reversed", "reversed"])
    held = encode([books[4], *with_reversed([s[cut_at:] for s in speakers])],
                  ["book 4", "conversation", "conversation", "reversed", "reversed"])
    return train, held


def recipe(bm, stage: str, steps: int, lr: float = 2e-3, batch: int = 4, seed: int = 0, ema: float = 0.98):
    """The toy runs' TrainRecipe: the node's defaults (dropout, diffusion forcing, clean prefixes, guide frames)
    except the step count, a learning rate for a tiny adapter, 4 clips per step, EMA 0.98 (about the last 50
    steps: the paper's 0.999 averages over more steps than these runs have) and 11-latent crops (the whole
    41-frame clips). Batch 1 at 5e-3 did not learn in 500 steps: one clip's loss at one random noise level
    is too noisy a gradient; without EMA the last iterate's head~listen swung from 0.65 (150 steps) to
    0.48 (200 steps)."""
    return bm.recipe.TrainRecipe(stage=stage, steps=steps, lr_new=lr, batch_size=batch, ema_decay=ema,
                                 window_latents=11, seed=seed)
