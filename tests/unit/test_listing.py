"""The registry listing: pyproject's [project] licence and URLs, [tool.comfy], and the LICENSE file agree."""

from pathlib import Path

import tomllib

from beyond_monologue.weights import load_manifest

ROOT = Path(__file__).resolve().parents[2]
REPO = "https://github.com/beyond-monologue/comfyui-beyond-monologue"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_licence_file_matches_the_declared_licence():
    declared = pyproject()["project"]["license"]["text"]
    text = (ROOT / "LICENSE").read_text()
    assert declared == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole licence, not a stub


def test_project_urls_are_complete():
    urls = pyproject()["project"]["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Repository", "Issues"}  # ComfyUI's comfy_config.types.URLs
    assert urls["Repository"] == REPO and urls["Issues"] == REPO + "/issues"
    assert all(url.startswith(REPO) for url in urls.values())


def test_tool_comfy_is_complete_and_points_at_real_files():
    comfy = pyproject()["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    prefix = "https://raw.githubusercontent.com/beyond-monologue/comfyui-beyond-monologue/main/"
    assert comfy["Icon"].startswith(prefix) and (ROOT / comfy["Icon"].removeprefix(prefix)).is_file()
    assert all((ROOT / folder).is_dir() for folder in comfy["includes"])
    assert comfy["requires-comfyui"].startswith(">=")


def test_listed_models_are_the_manifests_published_files():
    listed = {(m["location"], m["model_url"]) for m in pyproject()["tool"]["comfy"]["Models"]}
    published = {(f"/{f.folder}/{f.filename}", f.url) for f in load_manifest().files.values() if f.published}
    assert listed == published


def test_requirements_and_pyproject_list_the_same_runtime_dependencies():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert requirements == set(pyproject()["project"]["dependencies"])
    assert not {r for r in requirements if "==" in r} - {"BS-RoFormer==0.3.10"}  # the one pin a file layout demands
    developing = (ROOT / "docs" / "DEVELOPING.md").read_text()
    for requirement in requirements:
        name = requirement.split("=")[0].split(">")[0].split("<")[0]
        assert f"`{name}" in developing, f"{name} has no line in docs/DEVELOPING.md's Runtime dependencies"
