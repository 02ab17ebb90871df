"""Nodes of the training stage (category ``BeyondMonologue/train``): clips -> samples -> set -> trained adapter."""

from __future__ import annotations

import logging
import os

import comfy.model_management
import comfy.utils
import folder_paths
import node_helpers
from comfy_api.latest import io

from ..beyond_monologue.errors import BMInputError
from ..beyond_monologue.train.clips import check_clip_audio, make_sample, usable_frames
from ..beyond_monologue.train.recipe import OPTIMIZERS, STAGES, TrainRecipe
from ..beyond_monologue.train.samples import TrainingSet, load_set, save_set
from ..beyond_monologue.train.trainer import train_adapter
from .audio_encode import encode_streams
from .model_files import new_model_file
from .types import DuplexAdapterType

SET_FOLDER = "bm_training_sets"
TrainingSetType = io.Custom("BM_TRAINING_SET")
LossMapType = io.Custom("LOSS_MAP")  # ComfyUI's own type: {"loss": [float, ...]}, plotted by Plot Loss Graph
DTYPES = {"float32": None, "bfloat16": "bf16", "float16": "fp16"}


def register_set_folder() -> None:
    """Register ``models/bm_training_sets`` (safetensors only) with ``folder_paths`` once."""
    if SET_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[SET_FOLDER] = ([os.path.join(folder_paths.models_dir, SET_FOLDER)], {".safetensors"})


register_set_folder()


class BMTrainingSample(io.ComfyNode):
    """One clip (frames, talk, listen, reference, prompt) -> a training set holding that one sample."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMTrainingSample",
            display_name="BM Training Sample",
            category="BeyondMonologue/train",
            description=("Encodes one clip for training the duplex adapter: the frames and the reference with the "
                         "model's VAE, both speech streams with wav2vec2, and the prompt. Frames beyond the last 4n+1 "
                         "are dropped (with the audio they cover). Gives a training set of one sample: join sets with "
                         "BM Append Training Samples."),
            inputs=[
                io.Image.Input("images", tooltip="The clip's frames (Get Video Components' images), the avatar's face "
                               "filling the frame as at inference; at least 5 frames."),
                io.Audio.Input("talk", tooltip="The on-screen person's own speech over the clip (BM Split Conversation's talk)."),
                io.Audio.Input("listen", tooltip="The other person's speech over the clip (BM Split Conversation's listen)."),
                io.Vae.Input("vae", tooltip="The model's VAE (wan2.2_vae for Wan2.2-TI2V-5B)."),
                io.AudioEncoder.Input("audio_encoder", tooltip="wav2vec2 from Load Audio Encoder (the one used at inference)."),
                io.Image.Input("reference", tooltip="A reference frame of the same person (e.g. a frame from elsewhere in "
                               "the video); scaled and centre-cropped to the clip's size."),
                io.Conditioning.Input("positive", tooltip="The prompt describing the clip (CLIP Text Encode with umT5)."),
                io.Float.Input("fps", default=25.0, min=1.0, max=60.0, step=1.0,
                               tooltip="Frame rate of the frames (Get Video Components' fps; the adapter's 25)."),
                io.String.Input("source", default="", optional=True, tooltip="A note on where the clip is from (kept in the set)."),
            ],
            outputs=[TrainingSetType.Output(display_name="training_set", tooltip="A set of this one sample.")],
        )

    @classmethod
    def execute(cls, images, talk, listen, vae, audio_encoder, reference, positive, fps=25.0, source="") -> io.NodeOutput:
        frames = usable_frames(int(images.shape[0]))
        if frames < 5:
            raise BMInputError("images", f"has {images.shape[0]} frames; at least 5 (two latent frames) are needed.",
                               "use a longer clip.")
        all_frames = int(images.shape[0])
        check_clip_audio(talk, listen, all_frames, fps)
        trimmed = {name: _trim(audio, frames / fps) for name, audio in (("talk", talk), ("listen", listen))}
        duplex = encode_streams(trimmed["talk"], trimmed["listen"], audio_encoder, fps, frames)
        comfy.model_management.throw_exception_if_processing_interrupted()
        sample = make_sample(vae, images[:frames], reference, duplex, positive[0][0], source)
        return io.NodeOutput(TrainingSet().extended([sample]))


def _trim(audio: dict, seconds: float) -> dict:
    rate = int(audio["sample_rate"])
    return {"waveform": audio["waveform"][..., :max(1, round(seconds * rate))], "sample_rate": rate}


class BMAppendTrainingSamples(io.ComfyNode):
    """Two training sets -> one (the samples of both, in order)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMAppendTrainingSamples",
            display_name="BM Append Training Samples",
            category="BeyondMonologue/train",
            description="Joins two training sets (e.g. a set and a new BM Training Sample). Every sample must come "
                        "from the same VAE, text encoder and audio encoder.",
            inputs=[TrainingSetType.Input("training_set", tooltip="The set to extend."),
                    TrainingSetType.Input("more", tooltip="The samples to append.")],
            outputs=[TrainingSetType.Output(display_name="training_set", tooltip="Both sets' samples.")],
        )

    @classmethod
    def execute(cls, training_set, more) -> io.NodeOutput:
        return io.NodeOutput(training_set.extended(more.samples))


class BMSaveTrainingSet(io.ComfyNode):
    """BM_TRAINING_SET -> one safetensors file in ``models/bm_training_sets``."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMSaveTrainingSet",
            display_name="BM Save Training Set",
            category="BeyondMonologue/train",
            description=f"Saves a training set (encoded clips) to ComfyUI/models/{SET_FOLDER}, so that training can "
                        "start again without re-encoding. Never overwrites: a new numbered file each run.",
            inputs=[TrainingSetType.Input("training_set", tooltip="The set to save."),
                    io.String.Input("filename_prefix", default="bm_set", tooltip=f"File name prefix inside models/{SET_FOLDER}.")],
            outputs=[io.String.Output(display_name="file", tooltip="The saved file's name, as BM Load Training Set lists it.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, training_set, filename_prefix="bm_set") -> io.NodeOutput:
        path, listed = new_model_file(filename_prefix, SET_FOLDER)
        save_set(training_set, path)
        return io.NodeOutput(listed, ui={"text": [f"models/{SET_FOLDER}/{listed}: {training_set}"]})


class BMLoadTrainingSet(io.ComfyNode):
    """A file of ``models/bm_training_sets`` -> BM_TRAINING_SET."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMLoadTrainingSet",
            display_name="BM Load Training Set",
            category="BeyondMonologue/train",
            description=f"Loads a training set saved by BM Save Training Set from ComfyUI/models/{SET_FOLDER}.",
            inputs=[io.Combo.Input("training_set", options=folder_paths.get_filename_list(SET_FOLDER),
                                   tooltip=f"A set file in models/{SET_FOLDER}.")],
            outputs=[TrainingSetType.Output(display_name="training_set", tooltip="The encoded clips.")],
        )

    @classmethod
    def execute(cls, training_set) -> io.NodeOutput:
        path = folder_paths.get_full_path(SET_FOLDER, training_set)
        if not path:
            raise BMInputError("training_set", f"file {training_set!r} is not in models/{SET_FOLDER}.",
                               "save a set with BM Save Training Set, or refresh (press r).")
        return io.NodeOutput(load_set(path, f"training set {training_set!r}"))


class BMTrainDuplexAdapter(io.ComfyNode):
    """MODEL + training set (+ adapter to continue) -> trained BM_DUPLEX_ADAPTER and the LOSS_MAP of the run."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        r = TrainRecipe()
        return io.Schema(
            node_id="BMTrainDuplexAdapter",
            display_name="BM Train Duplex Adapter",
            category="BeyondMonologue/train",
            is_experimental=True,
            description=(
                "Trains the Beyond Monologue dual-stream adapter (Talking and Listening Q-Formers, MHGK cross-"
                "attention, learned nulls) on a set of clips, with the base Wan model frozen: flow matching through "
                "the model's own noise schedule, diffusion forcing, a guide frame at a random position, and dropout "
                "of talk, listen and text for guidance. Stage 'talking' trains the Talking branch only (the paper's "
                "stage 1), 'both' adds the Listening branch (stage 2). See docs/TRAINING.md for the recipe, time and "
                "memory. Connect the adapter to BM Apply Duplex Adapter or BM Save Duplex Adapter, the loss to Plot "
                "Loss Graph."),
            inputs=[
                io.Model.Input("model", tooltip="Wan2.2-TI2V-5B from Load Diffusion Model (the adapter's base); its "
                               "weights stay frozen."),
                TrainingSetType.Input("training_set", tooltip="Clips from BM Training Sample / BM Load Training Set."),
                io.Combo.Input("stage", options=list(STAGES), default=r.stage,
                               tooltip="talking: stage 1, Talking branch only (paper: 100k steps). both: stage 2, "
                                       "Listening added (paper: 30k steps)."),
                io.Int.Input("steps", default=r.steps, min=1, max=1_000_000, tooltip="Optimizer steps."),
                io.Int.Input("batch_size", default=r.batch_size, min=1, max=256,
                             tooltip="Clips per step (one forward pass each; the paper's global batch is 32)."),
                io.Int.Input("grad_accumulation", default=r.grad_accumulation, min=1, max=1024,
                             tooltip="Batches summed into one optimizer step."),
                io.Float.Input("lr_new", default=r.lr_new, min=1e-8, max=1.0, step=1e-6,
                               tooltip="Learning rate of the adapter (paper: 1e-5)."),
                io.Combo.Input("optimizer", options=list(OPTIMIZERS), default=r.optimizer, tooltip="Paper: AdamW."),
                io.Float.Input("ema_decay", default=r.ema_decay, min=0.0, max=1.0, step=0.0001,
                               tooltip="EMA of the adapter weights; the output is the EMA copy (paper: 0.999). 0 = off."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of crops, noise levels, dropout and noise."),
                io.Combo.Input("training_dtype", options=list(DTYPES), default="bfloat16",
                               tooltip="Autocast dtype of the forward pass (paper: bf16); the adapter's weights stay float32."),
                io.Boolean.Input("gradient_checkpointing", default=True,
                                 tooltip="Recompute each DiT block in the backward pass: far less memory, about a third "
                                         "more time."),
                io.Float.Input("dropout_talk", default=r.dropout_talk, min=0.0, max=1.0, step=0.01,
                               tooltip="Probability of replacing the talk stream by its learned null (the pack's choice 0.1)."),
                io.Float.Input("dropout_listen", default=r.dropout_listen, min=0.0, max=1.0, step=0.01,
                               tooltip="Probability of replacing the listen stream by its learned null (the pack's choice 0.1)."),
                io.Float.Input("dropout_text", default=r.dropout_text, min=0.0, max=1.0, step=0.01,
                               tooltip="Probability of training with the negative prompt instead of the prompt (0.1)."),
                io.Float.Input("diffusion_forcing", default=r.df_probability, min=0.0, max=1.0, step=0.05,
                               tooltip="Share of steps in which every latent frame gets its own noise level (0.5)."),
                io.Float.Input("guide_probability", default=r.guide_probability, min=0.0, max=1.0, step=0.05,
                               tooltip="Share of steps with a clean guide latent at a random position (0.8)."),
                io.Int.Input("window_latents", default=r.window_latents, min=2, max=64,
                             tooltip="Longest crop in latent frames (21 = 81 frames, BM Sampler's window)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="The negative prompt used at inference: text-dropout steps use it. "
                                              "Empty = an all-zero text context."),
                DuplexAdapterType.Input("continue_from", optional=True,
                                        tooltip="An adapter to continue (e.g. stage 1's for stage 2); unchanged itself."),
            ],
            outputs=[
                DuplexAdapterType.Output(display_name="trained_adapter", tooltip="The trained adapter with its training "
                                         "metadata: attach it with BM Apply Duplex Adapter or save it."),
                LossMapType.Output(display_name="loss", tooltip="Loss per step, for Plot Loss Graph."),
            ],
        )

    @classmethod
    def execute(cls, model, training_set, stage, steps, batch_size, grad_accumulation, lr_new, optimizer, ema_decay, seed,
                training_dtype, gradient_checkpointing, dropout_talk, dropout_listen, dropout_text, diffusion_forcing,
                guide_probability, window_latents, negative=None, continue_from=None) -> io.NodeOutput:
        recipe = TrainRecipe(stage=stage, steps=steps, batch_size=batch_size, grad_accumulation=grad_accumulation,
                             lr_new=lr_new, optimizer=optimizer, ema_decay=ema_decay, seed=seed, dropout_talk=dropout_talk,
                             dropout_listen=dropout_listen, dropout_text=dropout_text, df_probability=diffusion_forcing,
                             guide_probability=guide_probability, window_latents=window_latents)
        dtype = node_helpers.string_to_torch_dtype(DTYPES[training_dtype]) if DTYPES[training_dtype] else None
        bar = comfy.utils.ProgressBar(steps)
        result = train_adapter(model, training_set, recipe, adapter=None if continue_from is None else continue_from.adapter,
                               negative_text=None if negative is None else negative[0][0][0], training_dtype=dtype,
                               checkpointing=gradient_checkpointing,
                               on_step=lambda done, total, loss: bar.update_absolute(done, total),
                               check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted)
        text = (f"{steps} steps on {len(training_set)} clips in {result.seconds:.1f} s, final loss {result.losses[-1]:.4f}, "
                f"peak memory {result.peak_memory_mib:.0f} MiB")
        logging.info("BeyondMonologue: trained the duplex adapter: %s", text)
        return io.NodeOutput(result.trained, {"loss": result.losses}, ui={"text": [text]})


NODES = [BMTrainingSample, BMAppendTrainingSamples, BMSaveTrainingSet, BMLoadTrainingSet, BMTrainDuplexAdapter]
