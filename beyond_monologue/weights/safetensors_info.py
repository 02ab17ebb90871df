"""Read a .safetensors header without loading tensors, and tell whether the file is complete.

Format (huggingface/safetensors): 8-byte little-endian header length N, N bytes of JSON
(``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}``), then the
tensor bytes; offsets count from the end of the header. A complete file is exactly
``8 + N + max(end)`` bytes long, so truncation is detected even when the expected size is unknown.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit


class SafetensorsError(ValueError):
    """The file is not a readable, complete safetensors file (the message says why)."""


@dataclass(frozen=True)
class SafetensorsInfo:
    """What the header of a safetensors file says.

    Attributes:
        header_bytes: length N of the JSON header.
        data_bytes: bytes of tensor data the header describes (largest end offset).
        tensors: name -> (dtype string such as ``"F16"``, shape tuple).
        metadata: the ``__metadata__`` strings (empty when absent).
    """

    header_bytes: int
    data_bytes: int
    tensors: dict[str, tuple[str, tuple[int, ...]]]
    metadata: dict[str, str]

    @property
    def expected_file_bytes(self) -> int:
        """Size a complete file must have."""
        return 8 + self.header_bytes + self.data_bytes


def read_safetensors_info(path: str | Path) -> SafetensorsInfo:
    """Parse the header of ``path``.

    Raises:
        SafetensorsError: too short, header length or JSON invalid, or offsets malformed.
    """
    path = Path(path)
    with open(path, "rb") as src:
        prefix = src.read(8)
        if len(prefix) < 8:
            raise SafetensorsError(f"{path.name}: only {len(prefix)} bytes, not a safetensors file")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len == 0 or header_len > MAX_HEADER_BYTES:
            raise SafetensorsError(f"{path.name}: header length {header_len} is invalid (not a safetensors file?)")
        raw = src.read(header_len)
    if len(raw) < header_len:
        raise SafetensorsError(f"{path.name}: the file ends inside its {header_len}-byte header (truncated)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsError(f"{path.name}: the header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path.name}: the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    tensors, data_bytes = {}, 0
    for name, entry in header.items():
        try:
            begin, end = entry["data_offsets"]
            tensors[name] = (str(entry["dtype"]), tuple(int(d) for d in entry["shape"]))
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path.name}: tensor {name!r} has a malformed header entry") from None
        if not 0 <= begin <= end:
            raise SafetensorsError(f"{path.name}: tensor {name!r} has invalid offsets {begin}..{end}")
        data_bytes = max(data_bytes, end)
    return SafetensorsInfo(header_len, data_bytes, tensors, dict(metadata))


def completeness_problem(path: str | Path) -> str | None:
    """None when ``path`` is a complete safetensors file, else one sentence saying what is wrong."""
    path = Path(path)
    try:
        info = read_safetensors_info(path)
    except SafetensorsError as error:
        return str(error)
    actual = path.stat().st_size
    if actual < info.expected_file_bytes:
        return (f"{path.name} is truncated: {actual:,} bytes on disk, its header describes "
                f"{info.expected_file_bytes:,}")
    if actual > info.expected_file_bytes:
        return f"{path.name} has {actual - info.expected_file_bytes:,} unexpected bytes after its tensor data"
    return None
