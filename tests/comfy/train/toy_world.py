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
frame, against the stream's loudness per latent frame (Pearson r).
"""

from __future__ import annotations

import math

import numpy as np
import torch

FPS = 25.0
SIZE = 8  # latent pixels (4 x 4 DiT tokens)
CHANNELS = 48
MOUTH = (slice(4, 6), slice(2, 6))  # latent rows / cols
HEAD = (slice(0, 2), slice(2, 6))
AMPLITUDE = 1.5
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
    """Centred moving average over ``width`` frames (edges use the frames that exist)."""
    kernel = np.ones(width) / width
    padded = np.pad(values, (width // 2, width - 1 - width // 2), mode="edge")
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
        self.mouth_dir = torch.nn.functional.normalize(torch.randn(CHANNELS, generator=g), dim=0) * math.sqrt(CHANNELS)
        self.head_dir = torch.nn.functional.normalize(torch.randn(CHANNELS, generator=g), dim=0) * math.sqrt(CHANNELS)

    def video(self, mouth: np.ndarray, head: np.ndarray) -> torch.Tensor:
        """Model-space latent video ``[C, T, 8, 8]``; ``mouth`` / ``head`` per latent frame in 0..1."""
        t = len(mouth)
        x = self.pattern[:, None].repeat(1, t, 1, 1).clone()
        m = torch.tensor(mouth * 2 - 1).view(1, t, 1, 1) * AMPLITUDE
        h = torch.tensor(head * 2 - 1).view(1, t, 1, 1) * AMPLITUDE
        x[:, :, MOUTH[0], MOUTH[1]] += m * self.mouth_dir.view(-1, 1, 1, 1) / math.sqrt(CHANNELS)
        x[:, :, HEAD[0], HEAD[1]] += h * self.head_dir.view(-1, 1, 1, 1) / math.sqrt(CHANNELS)
        return x

    def reference(self) -> torch.Tensor:
        """Model-space ``[C, 1, 8, 8]``: the face at rest (mouth and head at their middle value)."""
        return self.pattern[:, None].clone()

    def region_signal(self, video: torch.Tensor, region: str) -> np.ndarray:
        """Per latent frame: a model-space video's region (``"mouth"`` / ``"head"``) projected on its direction."""
        rows, cols = MOUTH if region == "mouth" else HEAD
        direction = self.mouth_dir if region == "mouth" else self.head_dir
        part = (video[:, :, rows, cols] - self.pattern[:, None, rows, cols]).mean(dim=(2, 3))  # [C, T]
        return (direction @ part / math.sqrt(CHANNELS)).numpy()


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
        losses.append(float(loss))
    for p in params:
        p.requires_grad_(False)
    return losses


def encode_sources(encoder_model, waves: list[np.ndarray], rate: int = 16000) -> list[tuple[torch.Tensor, np.ndarray]]:
    """Each whole recording -> (wav2vec2 features per video frame ``[F, 12, 768]``, loudness per frame ``[F]``)."""
    from beyond_monologue.audio.speech_features import wav2vec2_frame_features

    out = []
    for wave in waves:
        frames = int(len(wave) / rate * FPS)
        frames = frames - (frames - 1) % 4
        with torch.no_grad():
            features = wav2vec2_frame_features(encoder_model, torch.as_tensor(wave), frames, "conv_features", "cpu")
        out.append((features.float(), frame_loudness(wave, rate, frames)))
    return out


def cut(source: tuple[torch.Tensor, np.ndarray], start: int, frames: int) -> tuple[torch.Tensor, np.ndarray]:
    """Frames ``start .. start + frames - 1`` of an encoded recording."""
    features, loud = source
    return features[start:start + frames], loud[start:start + frames]


def conversation(talk: tuple[torch.Tensor, np.ndarray], listen: tuple[torch.Tensor, np.ndarray]):
    """``(DuplexAudio, talk loudness per latent, smoothed listen loudness per latent)`` of two cut streams."""
    from beyond_monologue.audio.duplex_audio import DuplexAudio

    frames = talk[0].shape[0]
    ones = torch.ones(frames)
    audio = DuplexAudio(talk[0], listen[0], ones, ones, fps=FPS)
    return audio, per_latent(talk[1]), per_latent(smoothed(listen[1]))


def training_set(world: World, model, sources: list, clips: int, frames: int, seed: int = 0):
    """``clips`` samples: talk and listen cut at random from two different training recordings."""
    from beyond_monologue.train.samples import TrainingSample, TrainingSet

    g = torch.Generator().manual_seed(seed)
    base = model.model
    reference = base.process_latent_out(world.reference()[None])[0]
    samples = []
    for i in range(clips):
        a, b = torch.randperm(len(sources), generator=g)[:2].tolist()
        starts = [int(torch.randint(0, sources[k][0].shape[0] - frames + 1, (), generator=g)) for k in (a, b)]
        audio, mouth, head = conversation(cut(sources[a], starts[0], frames), cut(sources[b], starts[1], frames))
        latents = base.process_latent_out(world.video(mouth, head)[None])[0]
        samples.append(TrainingSample(latents.float(), reference.float(), audio, torch.zeros(8, 4096), f"toy {i}"))
    return TrainingSet().extended(samples)


def render(model_with_adapter, world: World, audio, seed: int = 0, steps: int = 8, window_latents: int = 11,
           scales=None) -> torch.Tensor:
    """BM Sampler's engine on a held-out conversation -> model-space video ``[C, T, 8, 8]``."""
    from beyond_monologue.sampling.guidance import GuidanceScales
    from beyond_monologue.sampling.long_video import SamplingSettings, sample_long_video
    from beyond_monologue.sampling.reference import Reference

    base = model_with_adapter.model
    reference = Reference("past_end", base.process_latent_out(world.reference()[None]).float())
    text = [[torch.zeros(1, 8, 4096), {}]]
    settings = SamplingSettings(steps=steps, sampler_name="euler", scheduler="simple", seed=seed,
                                scales=scales or GuidanceScales(1.0, 1.0, 1.0), window_latents=window_latents,
                                motion_latents=3)
    video = sample_long_video(model_with_adapter, text, text, audio, reference, settings)
    return base.process_latent_in(video)[0]
