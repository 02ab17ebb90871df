import pytest

from beyond_monologue.audio.turns import (
    mask_to_turns,
    merge_intervals,
    parse_turns_text,
    turns_from_json,
    turns_to_json,
    turns_to_mask,
)
from beyond_monologue.errors import BMInputError


def test_parse_rttm_merges_and_orders_by_first_turn(assets):
    turns = parse_turns_text((assets / "sample.rttm").read_text())
    assert list(turns) == ["speaker90", "speaker91"]  # speaker90 speaks first (6.69 s)
    assert turns["speaker90"][0] == pytest.approx((6.69, 7.12))
    # 18.05-21.49 (speaker90) overlaps 18.15-18.59 (speaker91): both keep it
    assert any(s <= 18.2 and e >= 18.5 for s, e in turns["speaker90"])
    assert any(s <= 18.2 and e >= 18.5 for s, e in turns["speaker91"])


def test_parse_plain_lines_and_comments():
    turns = parse_turns_text("# avatar first\n0.5 1.0 bob\n\n0.0 0.4 alice\n0.9 2.0 bob\n")
    assert list(turns) == ["alice", "bob"]
    assert turns["bob"] == [(0.5, 2.0)]


@pytest.mark.parametrize("text, fragment", [
    ("", "contains no turns"),
    ("1 2", "neither RTTM"),
    ("2.0 1.0 a", "end after the start"),
    ("-1 1 a", "start >= 0"),
])
def test_parse_rejects_bad_lines_with_fix(text, fragment):
    with pytest.raises(BMInputError, match=fragment) as info:
        parse_turns_text(text)
    assert "Fix:" in str(info.value) and str(info.value).startswith("turns:")


def test_json_round_trip():
    turns = {"a": [(0.0, 1.2345)], "b": [(1.0, 2.0), (3.0, 4.0)]}
    back = turns_from_json(turns_to_json(turns))
    assert back == {"a": [(0.0, 1.234)], "b": [(1.0, 2.0), (3.0, 4.0)]} or back["a"][0][1] == pytest.approx(1.2345, abs=1e-3)
    with pytest.raises(BMInputError):
        turns_from_json("not json")


def test_mask_and_back():
    mask = turns_to_mask([(0.25, 0.5), (0.75, 1.5)], num_samples=100, sample_rate=100)
    assert mask.sum() == 25 + 25  # second turn is clipped at the end of the audio
    assert mask_to_turns(mask, 100) == [(0.25, 0.5), (0.75, 1.0)]
    assert mask_to_turns(mask, 100, min_gap_s=0.3) == [(0.25, 1.0)]
    assert mask_to_turns(mask, 100, min_turn_s=0.26) == []


def test_merge_intervals_gap():
    assert merge_intervals([(2, 3), (0, 1), (1.05, 1.5)], gap_s=0.1) == [(0, 1.5), (2, 3)]
