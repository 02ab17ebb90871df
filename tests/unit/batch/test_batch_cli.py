"""Exit codes of ``python -m beyond_monologue.batch`` when the batch cannot start (no server needed)."""

import json

from beyond_monologue.batch.__main__ import EXIT_SETUP, EXIT_UNREACHABLE, main
from beyond_monologue.comfyui.comfy_launcher import free_port

WORKFLOW = {"1": {"class_type": "KSampler", "inputs": {"seed": 0}}}


def test_bad_job_file_exits_2_and_names_every_problem(tmp_path, capsys):
    (tmp_path / "w.json").write_text(json.dumps(WORKFLOW))
    (tmp_path / "jobs.csv").write_text("name,seed,1.seed\nj1,1,2\nj1,3,4\n")
    code = main([str(tmp_path / "w.json"), str(tmp_path / "jobs.csv"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == EXIT_SETUP
    assert "column 'seed' is neither mapped" in err and "name 'j1' is already used on line 2" in err
    assert not (tmp_path / "out").exists(), "nothing was started"


def test_unreachable_server_exits_3_before_anything_runs(tmp_path, capsys):
    (tmp_path / "w.json").write_text(json.dumps(WORKFLOW))
    (tmp_path / "jobs.jsonl").write_text('{"name": "j1", "1.seed": 5}\n')
    code = main([str(tmp_path / "w.json"), str(tmp_path / "jobs.jsonl"), "--out", str(tmp_path / "out"),
                 "--server", f"http://127.0.0.1:{free_port()}"])
    assert code == EXIT_UNREACHABLE
    assert "not reachable" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_second_server_that_is_unreachable_exits_3_naming_it(tmp_path, capsys):
    (tmp_path / "w.json").write_text(json.dumps(WORKFLOW))
    (tmp_path / "jobs.jsonl").write_text('{"name": "j1", "1.seed": 5}\n')
    first, second = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    code = main([str(tmp_path / "w.json"), str(tmp_path / "jobs.jsonl"), "--out", str(tmp_path / "out"),
                 "--server", first, "--server", second])
    assert code == EXIT_UNREACHABLE
    assert second in capsys.readouterr().err, "every --server is checked before anything runs"
