"""``python -m beyond_monologue.weights``: list model sets, verify, download, generate smoke checkpoints.

Run it from the pack's folder (``ComfyUI/custom_nodes/comfyui-beyond-monologue``) with ComfyUI's
Python. Exit codes: 0 success, 1 verification failed or files missing, 2 bad usage or manifest,
3 no network (nothing was downloaded; the files to fetch by hand are listed), 4 a download failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..comfyui.comfy_launcher import PACK_ROOT, find_comfyui
from .hashing import Sha256Cache, default_cache_path
from .manifest import ManifestError, load_manifest
from .messages import CLI, manual_instructions
from .verify import models_dir_of, set_is_usable, verify_set

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_NETWORK, EXIT_DOWNLOAD_FAILED = 0, 1, 2, 3, 4


# comfy_launcher's default --base-directory (the demo's DEFAULT_BASE): in a development checkout the
# server it starts reads BASE/models, not the models/ of the ComfyUI checkout it runs.
DEV_BASE = PACK_ROOT / ".comfyui" / "base"


def default_comfyui() -> Path | None:
    """The folder whose ``models/`` the commands use when ``--comfyui`` is not given.

    ``$COMFYUI_PATH``, else the ComfyUI this pack is installed in (``ComfyUI/custom_nodes/<pack>``),
    else, in a development checkout with a ComfyUI from ``scripts/setup_env.sh``, :data:`DEV_BASE`
    (the base directory ``comfy_launcher`` and the demo start ComfyUI with); None when there is none.
    """
    if os.environ.get("COMFYUI_PATH"):
        return Path(os.environ["COMFYUI_PATH"])
    if PACK_ROOT.parent.name == "custom_nodes" and (PACK_ROOT.parent.parent / "main.py").is_file():
        return PACK_ROOT.parent.parent
    try:
        find_comfyui()
    except FileNotFoundError:
        return None
    return DEV_BASE


def _comfyui_models(args) -> Path:
    comfyui = args.comfyui or default_comfyui()
    if comfyui is None:
        raise ManifestError("no ComfyUI folder found: pass --comfyui PATH (the folder that holds models/)")
    return models_dir_of(comfyui)


def _shown(file, path: Path | None, models_dir: Path) -> str:
    """``models/<folder>/<filename>``, plus where it was found when that is another place (alias or sub-folder)."""
    where = f"models/{file.folder}/{file.filename}"
    if path is None or path == file.target_path(models_dir):
        return where
    try:
        return f"{where} (found as models/{path.relative_to(models_dir).as_posix()})"
    except ValueError:
        return f"{where} (found as {path})"


def cmd_list(args) -> int:
    manifest = load_manifest(args.manifest)
    for model_set in manifest.sets.values():
        print(f"{model_set.name}  [{model_set.status}]\n  {model_set.description}")
        for entry in model_set.entries:
            file = entry.file
            need = "required" if entry.required else "optional"
            sha = f"sha256 {file.sha256[:12]}... ({file.sha256_evidence})" if file.sha256 else "sha256 unknown"
            print(f"  - {need:8} models/{file.folder}/{file.filename}")
            print(f"      {file.size_text()}; {sha}; {file.dtype}; licence {file.licence}")
            pinned = "" if not file.published or file.revision else " (revision unknown: the hub's main)"
            print(f"      {file.url or 'not published yet'}{pinned}")
            if args.verbose:
                print(f"      {file.purpose}")
        print()
    return EXIT_OK


def cmd_verify(args) -> int:
    manifest = load_manifest(args.manifest)
    models_dir = _comfyui_models(args)
    cache = Sha256Cache(args.cache)
    try:
        reports = verify_set(manifest, args.set, models_dir, cache, check_hash=not args.no_hash, progress=not args.quiet)
    finally:
        cache.save()
    print(f"{args.set} in {models_dir}:")
    for r in reports:
        need = "" if r.required else " (optional)"
        print(f"  {r.status.value:14} {_shown(r.file, r.path, models_dir)}{need}: {r.detail}")
    missing = [r.file for r in reports if not r.status.ok and r.required]
    if set_is_usable(reports):
        print("All required files are usable.")
        return EXIT_OK
    print(f"\n{len(missing)} required file(s) missing or not usable.")
    print(manual_instructions(missing))
    print(f"Or download them: {CLI} download --set {args.set} --comfyui <ComfyUI folder>")
    return EXIT_FAILED


def cmd_download(args) -> int:
    from .download import NetworkUnavailable, download_set

    manifest = load_manifest(args.manifest)
    models_dir = _comfyui_models(args)
    cache = Sha256Cache(args.cache)
    try:
        results = download_set(manifest, args.set, models_dir, include_optional=args.with_optional,
                               timeout_s=args.timeout, probe_timeout_s=args.probe_timeout, retries=args.retries,
                               progress=not args.quiet, cache=cache)
    except NetworkUnavailable as error:
        print(error, file=sys.stderr)
        return EXIT_NO_NETWORK
    finally:
        cache.save()
    for r in results:
        print(f"  {r.outcome:12} models/{r.file.folder}/{r.file.filename}: {r.detail}")
    failed = [r.file for r in results if r.outcome == "failed"]
    if failed:
        print(f"\n{len(failed)} download(s) failed; run the command again, or:", file=sys.stderr)
        print(manual_instructions(failed), file=sys.stderr)
        return EXIT_DOWNLOAD_FAILED
    if any(r.outcome == "unpublished" for r in results):
        print("Some files of this set are not published yet; the set cannot run until they are.")
    return EXIT_OK


def cmd_smoke(args) -> int:
    from .smoke.generate import generate_set

    manifest = load_manifest(args.manifest)
    names = args.set or list(manifest.sets)
    for name in names:
        manifest.get_set(name)
    models_dir = models_dir_of(args.out)

    def report(result) -> None:
        where = f"models/{result.file.folder}/{result.file.filename}"
        if result.outcome == "no-builder":
            print(f"  skipped  {where}: no smoke builder for {result.file.smoke or 'this file'}")
        elif result.outcome == "not-smoke":
            print(f"  skipped  {where}: {result.path} is not a smoke checkpoint; left untouched (smoke never "
                  "replaces a real model file, not even with --force)")
        else:
            print(f"  {result.outcome:8} {where}: {result.size_bytes / 2**20:.1f} MiB in {result.seconds:.1f} s")

    for name in names:
        print(f"{name} -> {models_dir}")
        generate_set(manifest, name, models_dir, seed=args.seed, force=args.force, on_result=report)
    print("These files are untrained (random values): they test loading and plumbing, and render noise.")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands list, verify, download, smoke)."""
    parser = argparse.ArgumentParser(
        prog=CLI,
        description="Model files for comfyui-beyond-monologue: which go where, verify them, download them, "
                    "or generate small untrained smoke checkpoints for tests. Exit codes: 0 ok, 1 files missing "
                    "or not usable, 2 usage or manifest error, 3 no network, 4 a download failed.")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="manifest JSON to use (default: the pack's weights_manifest/manifest.json)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="show every model set and its files (folder, size, hash, URL, licence)")
    p.add_argument("-v", "--verbose", action="store_true", help="also say what each file is for")
    p.set_defaults(func=cmd_list)

    def comfy_options(p):
        p.add_argument("--set", required=True, metavar="NAME", help="model set name (see `list`)")
        dev_base = str(DEV_BASE).replace("%", "%%")
        p.add_argument("--comfyui", type=Path, default=None,
                       help="ComfyUI folder (or --base-directory) holding models/; default: $COMFYUI_PATH, "
                            "else the ComfyUI this pack is installed in, else (development checkout) "
                            f"{dev_base}, the base directory the pack's launcher and demo run ComfyUI with")
        p.add_argument("--cache", type=Path, default=default_cache_path(),
                       help="sha256 cache file (default: %(default)s)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("verify", help="check the files of a set: present, size, safetensors structure, sha256",
                       description="Check a set's files in ComfyUI's models folder (sub-folders and the alias "
                                   "folders unet/ and clip/ count, as in ComfyUI). Hashes are cached by file "
                                   "size, modification time, inode and ctime, so a second run is instant.")
    comfy_options(p)
    p.add_argument("--no-hash", action="store_true", help="skip sha256 (presence, size and structure only)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("download", help="download the missing or broken files of a set from the Hugging Face hub",
                       description="Download a set's files into ComfyUI's models folder with huggingface_hub "
                                   "(the manifest's pinned commit; HF_TOKEN for gated repositories, HF_ENDPOINT "
                                   "for a mirror; a dropped connection is resumed), check size and sha256 "
                                   "against the manifest and the hub, rename atomically, and never replace a "
                                   "usable file. Without network it stops at once and lists the files, folders "
                                   "and URLs to fetch by hand.")
    comfy_options(p)
    p.add_argument("--with-optional", action="store_true", help="also download the set's optional files")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the hub's answer about each file (default 10; the transfer itself "
                        "uses huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT)")
    p.add_argument("--probe-timeout", type=float, default=5.0,
                   help="seconds to wait for the hub's first answer before declaring no network (default 5)")
    p.add_argument("--retries", type=int, default=3,
                   help="further downloads of a file after a dropped connection (default 3; huggingface_hub also "
                        "retries inside each)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("smoke", help="write small untrained checkpoints in the real layouts (for tests and demos)",
                       description="Generate smoke checkpoints (random values, fixed seed, real key names, dtypes "
                                   "and formats, reduced sizes where ComfyUI allows) under OUT/models/<folder>/ "
                                   "with the real file names, to try workflows without the real weights. Files "
                                   "already generated with the same seed are kept. A file that is not a smoke "
                                   "checkpoint (a real model, also in an alias or sub-folder) is never replaced, "
                                   "not even with --force.")
    p.add_argument("--out", type=Path, required=True, help="folder to write models/<folder>/<file> into")
    p.add_argument("--set", action="append", metavar="NAME", help="set to generate (repeatable; default: all)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true",
                   help="regenerate smoke files that are already current (files that are not smoke are kept)")
    p.set_defaults(func=cmd_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- keeps the interpreter's final flush quiet
        return EXIT_OK
