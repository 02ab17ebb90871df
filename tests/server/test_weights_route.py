"""GET /beyond_monologue/weights on the real server: the smoke checkpoints linked into its models
folders are present, the rest missing with their download facts; also served under /api."""

from beyond_monologue.weights import load_manifest

ROUTE = "/beyond_monologue/weights"


def test_route_reports_the_server_models_folders(client, served):
    manifest = load_manifest()
    status = client.get_json(ROUTE)
    assert status == client.get_json("/api" + ROUTE)

    linked = {(path.parent.name, path.name) for path in served.glob("*/*.safetensors")}
    expected_present = {f.id for f in manifest.files.values() if (f.folder, f.filename) in linked}
    assert expected_present, "the served fixture linked no manifest file"
    present = {file_id for file_id, entry in status["files"].items() if entry["present"]}
    assert present == expected_present
    for file_id in expected_present:
        file = manifest.files[file_id]
        assert {"folder": file.folder, "name": file.filename} in status["files"][file_id]["found"]

    # the lightx2v LoRA has no smoke checkpoint: missing, with everything needed to fetch it
    lora = manifest.files["lightx2v_i2v_14b_480p_lora"]
    assert "lightx2v_i2v_14b_480p_lora" in status["folders"]["loras"]["missing"]
    entry = status["files"]["lightx2v_i2v_14b_480p_lora"]
    assert (entry["url"], entry["filename"], entry["folder"], entry["licence"], entry["sets"]) == (
        lora.url, lora.filename, "loras", lora.licence, ["infinitetalk-wan21-14b-480p"])
    assert entry["size"] == lora.size_text()
    assert status["inputs"]["LoraLoaderModelOnly"]["lora_name"] == {
        "folders": ["loras"], "files": ["lightx2v_i2v_14b_480p_lora"]}
    assert status["inputs"]["BMApplyDuplexAdapter"]["adapter"]["folders"] == ["beyond_monologue", "model_patches"]
