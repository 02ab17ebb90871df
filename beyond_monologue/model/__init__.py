"""Model stage: the dual-stream audio adapter and how it attaches to a native ComfyUI Wan MODEL.

Takes an adapter file (the pack's layout (a) or the public InfiniteTalk layout (b)) and a Wan MODEL,
and gives the MODEL with Talking/Listening audio cross-attention (MHGK bias) added to every DiT block.

Modules: ``mhgk`` (the per-head Gaussian kernel), ``mhgk_attention`` (attention with that bias, every
backend), ``audio_qformer`` (causal Audio Q-Former), ``infinitetalk`` (the public InfiniteTalk
layout), ``duplex_adapter`` (``DuplexAdapter``), ``adapter_checkpoint`` (load/save/check adapter
files), ``trained_adapter`` (``TrainedAdapter``, an adapter in memory), ``wan_patch`` (the only
module that touches ComfyUI's Wan DiT internals).
"""
