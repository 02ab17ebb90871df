"""New model files written by the pack's save nodes: always inside a ComfyUI ``models/<folder>``, never overwriting."""

from __future__ import annotations

import os

import folder_paths

from ..beyond_monologue.errors import BMInputError


def new_model_file(prefix: str, folder_name: str, input_name: str = "filename_prefix") -> tuple[str, str]:
    """A new ``<prefix>_NNNNN_.safetensors`` path inside ``models/<folder_name>`` and its name as loaders list it.

    Uses ComfyUI's ``folder_paths.get_save_image_path`` (which refuses prefixes that leave the folder);
    the counter skips files that appeared since ComfyUI counted.

    Raises:
        BMInputError: (``input_name``) a prefix that leaves the folder.
    """
    root = os.path.join(folder_paths.models_dir, folder_name)
    try:
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, root)
    except Exception as err:  # noqa: BLE001 - folder_paths raises a bare Exception for a prefix leaving the folder
        raise BMInputError(input_name, f"{prefix!r} is not a file name inside models/{folder_name} ({err}).",
                           "use a plain name such as 'my_file' or 'stage1/my_file'.") from None
    os.makedirs(folder, exist_ok=True)
    while os.path.exists(os.path.join(folder, f"{name}_{counter:05}_.safetensors")):
        counter += 1
    file_name = f"{name}_{counter:05}_.safetensors"
    return os.path.join(folder, file_name), f"{subfolder}/{file_name}" if subfolder else file_name
