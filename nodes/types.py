"""Socket types of the pack shared by several stage modules (define each once, import it everywhere)."""

from __future__ import annotations

from comfy_api.latest import io

#: ``BM_DUPLEX_AUDIO``: a :class:`beyond_monologue.audio.duplex_audio.DuplexAudio` (talk + listen features).
DuplexAudioType = io.Custom("BM_DUPLEX_AUDIO")

#: ``BM_DUPLEX_ADAPTER``: a :class:`beyond_monologue.model.trained_adapter.TrainedAdapter` (an adapter in memory).
DuplexAdapterType = io.Custom("BM_DUPLEX_ADAPTER")
