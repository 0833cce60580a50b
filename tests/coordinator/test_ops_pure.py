"""The ops pieces that decide without I/O: times as typed, stranded reasons,
and the documents the queries return."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from flowbaton.backends.records import ClaimInfo, Decline, FlowDetail, ReplicaInfo, TaskDetail
from flowbaton.backends.states import PENDING, RUNNING, SUCCESS
from flowbaton.ops.documents import ClaimRow, FlowRow, FlowShow
from flowbaton.ops.stranded import stranded_reason
from flowbaton.ops.times import age_of, parse_duration, parse_point

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0), ("1d12h", 129600.0),
    ("1h30m", 5400.0), ("2w", 1209600.0), ("0.5h", 1800.0), (" 5M ", 300.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "h1", "-5m", "-5", "1d junk"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like"):
        parse_duration(text)


def test_points_in_time() -> None:
    assert parse_point("10m", NOW) == NOW - 600
    stamp = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc).timestamp()
    assert parse_point("2024-05-01T10:00:00Z", NOW) == stamp
    assert parse_point("2024-05-01T12:00:00+02:00", NOW) == stamp
    assert parse_point("2024-05-01T10:00", NOW) == datetime(2024, 5, 1, 10, 0).timestamp()  # local time
    assert age_of("1h", NOW) == 3600 and age_of("2999-01-01", NOW) == 0
    with pytest.raises(ValueError, match="not a time"):
        parse_point("yesterday", NOW)


def _flow(state: str = PENDING, factory: str = "svc.flows:make") -> FlowDetail:
    return FlowDetail(id="f", name="n", factory=factory, state=state)


def _replica(replica_id: str, allow: list[str], started_at: float = NOW - 100) -> ReplicaInfo:
    return ReplicaInfo(replica_id, "h", 1, started_at, "0.1.0", allow)


def test_stranded_reasons() -> None:
    able, other = _replica("a", ["svc."]), _replica("b", ["other."])
    assert stranded_reason(_flow(), False, [], []) == "no live replica: start one that may import its factory"
    assert "no live replica may import 'svc.flows'" in (stranded_reason(_flow(), False, [], [other]) or "")
    assert stranded_reason(_flow(), False, [], [able, other]) is None  # a may run it
    declined = [Decline("a", "FactoryError: gone", NOW)]
    assert "a: FactoryError: gone" in (stranded_reason(_flow(), False, declined, [able, other]) or "")
    assert stranded_reason(_flow(), True, declined, [able]) is None  # claimed: someone runs it
    assert stranded_reason(_flow(SUCCESS), False, declined, [able]) is None  # finished
    assert stranded_reason(_flow(RUNNING), False, declined, [able]) is not None  # its owner died
    restarted = _replica("a", ["svc."], started_at=NOW + 10)  # declined before it (re)started
    assert stranded_reason(_flow(), False, declined, [restarted]) is None
    assert stranded_reason(_flow(factory="not a name"), False, [], [able]) is not None


# ---------------------------------------------------------------- documents
# The --json shapes are a compatibility promise (docs/design.md, "Operator
# output"): keys only ever added, in this order.

FLOW_KEYS = ["id", "name", "state", "factory", "owner", "created_at", "updated_at", "reason"]
CLAIM_KEYS = ["flow_id", "owner", "token", "epoch", "claimed_at", "expires_at", "host", "pid", "state", "age",
              "lease", "lease_left", "last_progress", "stale"]
SHOW_KEYS = ["id", "name", "state", "factory", "args", "kwargs", "inputs", "owner", "tasks", "unmatched",
             "reason", "declines", "created_at", "updated_at", "epoch", "claim", "resumes", "operations",
             "decisions", "stranded", "stranded_reason", "claims"]
TASK_KEYS = ["id", "state", "version", "attempts", "result", "failure", "owner", "started_at", "finished_at", "epoch",
             "history"]


def test_flow_rows_keep_their_keys_and_order() -> None:
    assert list(FlowRow.of(_flow(), None).to_json()) == FLOW_KEYS
    stranded = FlowRow.of(_flow(), None, "no live replica").to_json()
    assert list(stranded) == [*FLOW_KEYS, "stranded"] and stranded["stranded"] == "no live replica"


def test_claim_rows_say_where_the_owner_runs_and_what_is_left() -> None:
    claim = ClaimInfo("f", "a", "a#1", 3, NOW - 5, NOW + 7)
    live = ClaimRow.of(claim, _replica("a", []), _flow(RUNNING), NOW - 1, NOW).to_json()
    assert list(live) == CLAIM_KEYS
    assert (live["host"], live["age"], live["lease"], live["lease_left"], live["stale"]) == ("h", 5.0, "lease",
                                                                                             7.0, False)
    session = ClaimRow.of(ClaimInfo("f", "b", "b#1", 3, NOW, None), now=NOW).to_json()
    assert (session["lease"], session["lease_left"], session["host"], session["stale"]) == ("session", None,
                                                                                            None, True)


def test_show_lists_todays_tasks_first_and_reads_meta_by_type() -> None:
    flow = _flow(RUNNING)
    flow.meta = {"tasks": ["b", "a"], "unmatched": ["z"], "version_decisions": {"*": "rerun"}, "newer": 1}
    stored = {"z": TaskDetail("z", SUCCESS, 1, None, "1.0", 1, NOW, NOW, "r", "r#1", 1, {})}
    doc = FlowShow.of(flow, stored, [Decline("r", "no", NOW)], None, "why").to_json()
    assert list(doc) == SHOW_KEYS and all(list(t) == TASK_KEYS for t in doc["tasks"])
    assert [t["id"] for t in doc["tasks"]] == ["b", "a", "z"] and doc["tasks"][0]["state"] == PENDING
    assert (doc["unmatched"], doc["decisions"], doc["resumes"], doc["operations"]) == (["z"], {"*": "rerun"}, [], [])
    assert (doc["stranded"], doc["stranded_reason"], doc["owner"]) == (True, "why", None)
    assert doc["claims"] == [] and doc["tasks"][2]["history"] == []
