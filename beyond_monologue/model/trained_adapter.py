"""The ``BM_DUPLEX_ADAPTER`` socket value: an adapter held in memory, e.g. straight out of training.

BM Train Duplex Adapter gives one; BM Apply Duplex Adapter attaches it without a file, and BM Save
Duplex Adapter writes it as a layout (a) file (docs/ADAPTER_FORMAT.md) with its training metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .duplex_adapter import DuplexAdapter


@dataclass
class TrainedAdapter:
    """A :class:`DuplexAdapter` and the facts of how it was made.

    Attributes:
        adapter: the module (its parameters in float32 on the CPU once training has finished; the
            EMA weights when EMA was on). Its ``config.trained`` is True for a trained adapter.
        metadata: string key -> string value, written into the safetensors header by BM Save Duplex
            Adapter (stage, steps, samples, hours of audio, base model file and hash, dropout rates,
            RoPE/MHGK settings; keys in docs/ADAPTER_FORMAT.md).
    """

    adapter: DuplexAdapter
    metadata: dict[str, str] = field(default_factory=dict)
