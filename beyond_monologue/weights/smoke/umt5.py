"""umT5 text-encoder checkpoint in the layout of ComfyUI's ``umt5_xxl_fp8_e4m3fn_scaled`` file, reduced.

Layout: Hugging Face T5 encoder names (``shared``, ``encoder.block.N.layer.{0,1}...``,
``encoder.final_layer_norm``) with a relative-attention bias in every block (umT5), the
SentencePiece model as a ``spiece_model`` uint8 tensor (ComfyUI's WanT5Tokenizer reads the tokenizer
from the checkpoint), Linear weights in ComfyUI's scaled-fp8 storage with a ``scaled_fp8`` marker.

ComfyUI's CLIPLoader (comfy/sd.py ``detect_te_model``) recognises umT5-XXL only by a 24th block
whose FFN input width is 4096, and then builds the fixed umt5_config_xxl.json model (5.7 B
parameters) whatever the file holds. So the manifest's smoke file is full size
(:func:`umt5_xxl_fp8_scaled`: 5.7 GB, about two minutes per prompt on a 2-core CPU), which lets the
example workflows run their native CLIPLoader -> CLIP Text Encode path unchanged; the reduced file
(:func:`umt5_xxl_fp8_scaled_reduced`) is for fast in-process tests through ComfyUI's own T5 code
with a reduced config. The tokenizer is a tiny SentencePiece model trained here on a few fixed
sentences (deterministic); token ids stay below its vocabulary, so in the full file only those
rows of the 256,384-row embedding are random and the rest are zero.
"""

from __future__ import annotations

import io
import json

import torch

from .tensors import Layout, Spec, fill, linear, random_tensor, to_scaled_fp8

# d_model stays 4096: the Wan DiT's text projection (text_dim) is fixed at 4096 in ComfyUI.
SMOKE_DIMS = {"d_model": 4096, "d_ff": 128, "num_layers": 2, "num_heads": 4, "d_kv": 16}
REAL_DIMS = {"d_model": 4096, "d_ff": 10240, "num_layers": 24, "num_heads": 64, "d_kv": 64, "vocab_size": 256384}
RELATIVE_BUCKETS = 32
SMOKE_VOCAB = 320

_CORPUS = (
    "a portrait looks into the camera and speaks clearly",
    "the listener nods slowly while the other person is talking",
    "two people take turns in a calm conversation at a table",
    "she smiles and answers the question with a short sentence",
    "he raises his eyebrows and listens to the whole story",
    "bright studio light, soft shadows, a plain grey background",
    "talking and listening avatars share one conversation",
    "the quick brown fox jumps over the lazy dog near the river",
)


def umt5_layout(d_model: int, d_ff: int, num_layers: int, num_heads: int, d_kv: int, vocab_size: int) -> Layout:
    """Every tensor key of a umT5 encoder checkpoint (without ``spiece_model`` and fp8 extras)."""
    inner = num_heads * d_kv
    layout: Layout = {"shared.weight": Spec((vocab_size, d_model), "embedding")}
    for n in range(num_layers):
        attn = f"encoder.block.{n}.layer.0"
        for proj in ("q", "k", "v"):
            linear(layout, f"{attn}.SelfAttention.{proj}", inner, d_model, bias=False)
        linear(layout, f"{attn}.SelfAttention.o", d_model, inner, bias=False)
        layout[f"{attn}.SelfAttention.relative_attention_bias.weight"] = Spec((RELATIVE_BUCKETS, num_heads), "param")
        layout[f"{attn}.layer_norm.weight"] = Spec((d_model,), "norm")
        ffn = f"encoder.block.{n}.layer.1"
        linear(layout, f"{ffn}.DenseReluDense.wi_0", d_ff, d_model, bias=False)
        linear(layout, f"{ffn}.DenseReluDense.wi_1", d_ff, d_model, bias=False)
        linear(layout, f"{ffn}.DenseReluDense.wo", d_model, d_ff, bias=False)
        layout[f"{ffn}.layer_norm.weight"] = Spec((d_model,), "norm")
    layout["encoder.final_layer_norm.weight"] = Spec((d_model,), "norm")
    return layout


def smoke_tokenizer_model() -> bytes:
    """A tiny SentencePiece BPE model (pad 0, eos 1, unk 2 as in umT5), same bytes on every call."""
    import sentencepiece

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 4), model_writer=buffer, vocab_size=SMOKE_VOCAB, model_type="bpe",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, minloglevel=2, character_coverage=1.0,
        hard_vocab_limit=False)
    return buffer.getvalue()


def umt5_xxl_fp8_scaled(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Full-size umT5-XXL encoder (the shape CLIPLoader builds), scaled fp8 Linear + fp16 rest, with its tokenizer.

    Built one tensor at a time so that peak memory stays near the file size (5.7 GB); embedding rows
    the tiny tokenizer never produces are zero (see module doc).
    """
    tokenizer = smoke_tokenizer_model()
    import sentencepiece

    vocab = sentencepiece.SentencePieceProcessor(model_proto=tokenizer).get_piece_size()
    layout = umt5_layout(**REAL_DIMS)
    state_dict: dict[str, torch.Tensor] = {}
    for key, spec in layout.items():
        if key == "shared.weight":
            embedding = torch.zeros(spec.shape, dtype=torch.float16)
            embedding[:vocab] = random_tensor(key, Spec((vocab, spec.shape[1]), spec.kind), seed, torch.float16)
            state_dict[key] = embedding
        elif spec.kind == "linear":
            single = {key: random_tensor(key, spec, seed, torch.float32)}
            state_dict.update(to_scaled_fp8(single, {key: spec}, scale_input=False))
        else:
            state_dict[key] = random_tensor(key, spec, seed, torch.float16)
    state_dict["spiece_model"] = torch.frombuffer(bytearray(tokenizer), dtype=torch.uint8)
    return state_dict, {"bm_smoke_layout": "umT5-XXL encoder, full size, ComfyUI scaled fp8 (Hugging Face T5 key names)",
                        "bm_smoke_dims": json.dumps(REAL_DIMS, sort_keys=True)}


def umt5_xxl_fp8_scaled_reduced(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Reduced umT5 encoder, scaled fp8 (Linear) + fp16 (embeddings, norms), with its tokenizer.

    Dims: width 4096 (the real output width), FFN 128, 2 blocks, 4 heads of 16; vocabulary = the
    tiny tokenizer's size. Output: [B, 512, 4096] like umT5-XXL.
    """
    tokenizer = smoke_tokenizer_model()
    import sentencepiece

    vocab = sentencepiece.SentencePieceProcessor(model_proto=tokenizer).get_piece_size()
    layout = umt5_layout(**SMOKE_DIMS, vocab_size=vocab)
    state_dict = to_scaled_fp8(fill(layout, seed, torch.float16), layout, scale_input=False)
    state_dict["spiece_model"] = torch.frombuffer(bytearray(tokenizer), dtype=torch.uint8)
    return state_dict, {"bm_smoke_layout": "umT5 encoder, ComfyUI scaled fp8 (Hugging Face T5 key names)",
                        "bm_smoke_dims": json.dumps({**SMOKE_DIMS, "vocab_size": vocab}, sort_keys=True)}
