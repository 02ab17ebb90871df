"""The weights command line: which ComfyUI models folder it uses by default."""

import pytest

from beyond_monologue.comfyui import demo
from beyond_monologue.comfyui.comfy_launcher import PACK_ROOT
from beyond_monologue.weights import cli
from beyond_monologue.weights.verify import models_dir_of


def test_a_development_checkout_uses_the_launchers_models_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setattr(cli, "find_comfyui", lambda: tmp_path / "ComfyUI")  # set up by scripts/setup_env.sh
    assert PACK_ROOT.parent.name != "custom_nodes"  # this checkout is not installed in a ComfyUI
    base = PACK_ROOT / ".comfyui" / "base"
    assert cli.default_comfyui() == base == demo.DEFAULT_BASE  # where comfy_launcher and the demo put models/
    assert models_dir_of(cli.default_comfyui()) == base / "models"

    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path / "Mine"))  # an explicit choice wins
    assert cli.default_comfyui() == tmp_path / "Mine"

    with pytest.raises(SystemExit):
        cli.main(["verify", "--help"])
    assert str(base) in " ".join(capsys.readouterr().out.split())  # --help names the folder


def test_without_any_comfyui_there_is_no_default(monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)

    def nowhere():
        raise FileNotFoundError("ComfyUI not found")

    monkeypatch.setattr(cli, "find_comfyui", nowhere)
    assert cli.default_comfyui() is None
