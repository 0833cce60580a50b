"""The flow meta owner: one spelling of each key, and round trips that
change nothing they were not asked to."""

from __future__ import annotations

from flowbaton.backends import records
from flowbaton.engine import meta
from flowbaton.engine.meta import FlowMeta


def test_the_keys_the_decoder_checks_are_the_keys_the_owner_reads() -> None:
    owned = {meta.TAKEOVERS, meta.PROGRESS_MARK, meta.TASKS, meta.UNMATCHED, meta.RESUMES, meta.OPERATIONS,
             meta.DIFF, meta.DECISIONS, meta.BUILD, meta.ALLOWED_BUILD, meta.CLAIMS}
    assert set(records._FLOW_META) == owned


def test_unknown_keys_and_their_order_survive_a_change() -> None:
    raw = {"from_a_newer_release": {"x": 1}, "takeovers": 2, "tasks": ["a"]}
    changed = FlowMeta(raw).counted(3, 1).to_dict()
    assert list(changed) == ["from_a_newer_release", "takeovers", "tasks", "progress_mark"]
    assert changed["from_a_newer_release"] == {"x": 1} and raw["takeovers"] == 2  # the input is not touched


def test_a_reset_counter_drops_the_progress_mark() -> None:
    reset = FlowMeta({"takeovers": 4, "progress_mark": 2}).counter_reset()
    assert reset.to_dict() == {"takeovers": 0} and reset.progress_mark is None


def test_unmatched_is_written_when_there_are_some_or_to_clear_old_ones() -> None:
    assert "unmatched" not in FlowMeta().built(["a"], []).to_dict()
    assert FlowMeta().built(["a"], ["gone"]).unmatched == ["gone"]
    assert FlowMeta({"unmatched": ["gone"]}).built(["a"], []).to_dict()["unmatched"] == []


def test_histories_keep_the_last_entries() -> None:
    flow = FlowMeta()
    for i in range(meta.HISTORY + 5):
        flow = flow.operated({"n": i}).resumed({"n": i}, {"added": []})
    assert [e["n"] for e in flow.operations] == list(range(5, meta.HISTORY + 5))
    assert len(flow.resumes) == meta.HISTORY and flow.diff == {"added": []}


def test_undecided_versions_are_the_fail_policy_changes_of_the_last_diff() -> None:
    diff = {"version_changed": [{"task": "a", "policy": "fail"}, {"task": "b", "policy": "rerun"}, "junk"]}
    assert FlowMeta({"diff": diff}).undecided_versions() == [{"task": "a", "policy": "fail"}]
    assert FlowMeta({"diff": "not an object"}).undecided_versions() == []


def test_a_placeholder_is_known_by_its_key_whatever_it_holds() -> None:
    assert FlowMeta.placeholder("/f", "bad json", None, "r1", 1.0).is_placeholder
    assert FlowMeta({"corrupt_record": "hand-edited"}).is_placeholder
    assert not FlowMeta({"tasks": []}).is_placeholder
