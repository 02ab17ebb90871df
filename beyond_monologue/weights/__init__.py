"""Model weights: the manifest of model sets, verification, download, and smoke checkpoints.

* :mod:`.manifest` loads ``weights_manifest/manifest.json`` (files, ComfyUI folders, URLs, sizes,
  hashes, licences; sets of files).
* :mod:`.messages` turns a missing or broken file into a message naming its set, folder and URL;
  nodes raise :func:`missing_file_error` / :func:`bad_file_error`.
* :mod:`.verify`, :mod:`.download`, :mod:`.hashing`, :mod:`.safetensors_info` check and fetch files.
* :mod:`.smoke` builds small untrained checkpoints in the real layouts for tests and demos (imports torch).
* :mod:`.presence` says which manifest files a ComfyUI install has and which loader inputs read
  which folders; :mod:`.route` serves it as ``GET /beyond_monologue/weights`` for the web extension.
* :mod:`.cli` is ``python -m beyond_monologue.weights``.

Importing this package loads neither torch nor ComfyUI.
"""

from .manifest import Manifest, ManifestError, ModelFile, ModelSet, load_manifest
from .messages import bad_file_error, missing_file_error, missing_file_message

__all__ = ["Manifest", "ManifestError", "ModelFile", "ModelSet", "bad_file_error", "load_manifest",
           "missing_file_error", "missing_file_message"]
