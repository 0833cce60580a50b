"""A flow's timeline (``ops.timeline``) and its drawings: text
(``cli.timeline``) and SVG (``ops.timeline_svg``), from hand-built records
(a takeover after kill -9, records from before the history, hostile
records), and ``show --timeline`` / ``--svg`` / ``--json --timeline`` on a
SQLite store."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from flowbaton.backends.base import Backend
from flowbaton.backends.records import ClaimInfo, FlowDetail, TaskDetail
from flowbaton.backends.states import RUNNING, SUCCESS
from flowbaton.cli.completion import completion_script
from flowbaton.cli.main import build_parser
from flowbaton.cli.timeline import _symbols, render_timeline
from flowbaton.ops import Ops
from flowbaton.ops.axis import axis, span_label
from flowbaton.ops.documents import FlowShow
from flowbaton.ops.timeline import ATTEMPTS_READ, Timeline, timeline
from flowbaton.ops.timeline_svg import MAX_ROWS, to_svg

from .ops_helpers import bad_input, run_cli, store

T = 1765130000.0
SVG = "{http://www.w3.org/2000/svg}"
SGR = re.compile(r"\x1b\[\d+m")  # the only escape sequence the text drawing writes: a colour


def flow(*, meta: dict[str, Any] | None = None, tasks: list[str] | None = None, name: str = "provision",
         state: str = RUNNING) -> FlowDetail:
    listed = {"tasks": tasks if tasks is not None else ["fetch", "build", "deploy"]}
    return FlowDetail(id="f1", name=name, factory="m:f", state=state, created_at=T - 0.5, updated_at=T + 9,
                      meta={**listed, **(meta or {})})


def detail(task_id: str, state: str, attempt: Any, started: Any, finished: Any, owner: str, epoch: Any,
           history: Any = None, **meta: Any) -> TaskDetail:
    extra = {**meta, **({"history": history} if history is not None else {})}
    return TaskDetail(task_id, state, None, None, "1.0", attempt, started, finished, owner, f"{owner}#x", epoch,
                      extra)


def earlier(attempt: Any, started: Any, finished: Any, outcome: Any, owner: Any, epoch: Any,
            error: Any = None) -> dict[str, Any]:
    entry = {"attempt": attempt, "started_at": started, "finished_at": finished, "outcome": outcome,
             "owner": owner, "epoch": epoch}
    return {**entry, "error": error} if error is not None else entry


def live(owner: str, epoch: int, at: float) -> ClaimInfo:
    return ClaimInfo("f1", owner, f"{owner}#y", epoch, at, at + 20)


def killed() -> FlowShow:
    """replica-a ran fetch (once retried) and started build, then died
    (kill -9); replica-b claimed the flow at +8s and runs build again."""
    claims = [{"epoch": 1, "owner": "replica-a", "claimed_at": T, "ended_at": None, "ended": "expired"},
              {"epoch": 2, "owner": "replica-b", "claimed_at": T + 8, "ended_at": None, "ended": None}]
    tasks = {
        "fetch": detail("fetch", SUCCESS, 2, T + 1, T + 2, "replica-a", 1,
                        [earlier(1, T + 0.1, T + 0.9, "retry", "replica-a", 1, "builtins.ValueError: boom")]),
        "build": detail("build", RUNNING, 2, T + 8.2, None, "replica-b", 2,
                        [earlier(1, T + 2.1, None, "in doubt", "replica-a", 1)]),
    }
    return FlowShow.of(flow(meta={"claims": claims}), tasks, [], live("replica-b", 2, T + 8), None)


# -------------------------------------------------------------------- model


def test_a_takeover_after_kill_9_shows_the_attempt_in_doubt_the_retry_and_how_long_the_flow_stood_still() -> None:
    t = timeline(killed(), now=T + 12)
    assert [line.task_id for line in t.tasks] == ["fetch", "build", "deploy"]
    assert (t.start, t.end, t.replicas) == (T, T + 12, ["replica-a", "replica-b"])
    fetch, build, deploy = t.tasks
    assert [(a.number, a.outcome, a.error) for a in fetch.attempts] == [
        (1, "retry", "builtins.ValueError: boom"), (2, "success", None)]
    doubt, retry = build.attempts
    assert (doubt.replica, doubt.epoch, doubt.in_doubt, doubt.finished_at, doubt.until) == (
        "replica-a", 1, True, None, T + 8.2)  # drawn up to the retry: its owner was gone by then
    assert (retry.replica, retry.outcome, retry.in_doubt, retry.open, retry.until) == (
        "replica-b", "running", False, True, T + 12)
    assert deploy.attempts == [] and deploy.state == "PENDING"
    [takeover] = t.takeovers
    assert (takeover.at, takeover.epoch, takeover.from_owner, takeover.to_owner) == (T + 8, 2, "replica-a",
                                                                                     "replica-b")
    assert takeover.stood_still == pytest.approx(5.9)  # from the last thing replica-a started (build, +2.1s)
    assert [(c.owner, c.ended, c.until) for c in t.claims] == [("replica-a", "expired", T + 8),
                                                                ("replica-b", None, T + 12)]
    doc = json.loads(json.dumps(t.to_json()))
    assert list(doc) == ["flow_id", "name", "state", "start", "end", "now", "replicas", "tasks", "claims",
                         "takeovers"]
    assert doc["takeovers"][0]["stood_still"] == pytest.approx(5.9)
    assert doc["tasks"][1]["attempts"][0]["outcome"] == "in doubt"


def test_a_running_attempt_is_in_doubt_unless_the_live_claim_runs_it() -> None:
    running = {"build": detail("build", RUNNING, 1, T + 2, None, "replica-a", 1)}
    nobody = timeline(FlowShow.of(flow(), running, [], None, None), now=T + 10)  # owner dead, no claim yet
    [attempt] = nobody.tasks[1].attempts
    assert (attempt.in_doubt, attempt.outcome, attempt.until) == (True, "in doubt", T + 10)
    other = timeline(FlowShow.of(flow(), running, [], live("replica-b", 2, T + 9), None), now=T + 10)
    assert other.tasks[1].attempts[0].in_doubt
    restarted = timeline(FlowShow.of(flow(), running, [], live("replica-a", 2, T + 9), None), now=T + 10)
    assert restarted.tasks[1].attempts[0].in_doubt  # the same id, a new process: its old attempt is in doubt
    ours = timeline(FlowShow.of(flow(), running, [], live("replica-a", 1, T), None), now=T + 10)
    assert [(a.outcome, a.in_doubt) for a in ours.tasks[1].attempts] == [("running", False)]


def test_records_from_before_the_history_show_current_attempts_and_the_resumes() -> None:
    resumes = [{"at": T + 5, "epoch": 2, "owner": "r2", "previous_owner": "r1", "takeover": True, "added": []},
               {"at": T + 9, "epoch": 3, "owner": "r3", "previous_owner": "r2", "takeover": True}]
    tasks = {"fetch": detail("fetch", SUCCESS, 1, T + 1, T + 2, "r1", 1),
             "build": detail("build", SUCCESS, 2, T + 5.5, T + 6, "r2", 2)}
    t = timeline(FlowShow.of(flow(meta={"resumes": resumes}), tasks, [], live("r3", 3, T + 9), None), now=T + 10)
    assert [len(line.attempts) for line in t.tasks] == [1, 1, 0]
    assert [(c.owner, c.epoch, c.ended) for c in t.claims] == [("r2", 2, "expired"), ("r3", 3, None)]
    first, second = t.takeovers
    assert (first.from_owner, first.to_owner, second.from_owner, second.to_owner) == ("r1", "r2", "r2", "r3")
    assert first.stood_still == pytest.approx(3.0) and second.stood_still == pytest.approx(3.0)
    assert t.replicas == ["r1", "r2", "r3"]


def test_a_revert_is_an_attempt_of_its_own_and_the_execute_keeps_its_end() -> None:
    revert = {"started_at": T + 5, "finished_at": T + 6, "owner": "r2", "epoch": 2, "execute_finished_at": T + 2}
    tasks = {"fetch": detail("fetch", "REVERTED", 1, T + 1, T + 6, "r1", 1, revert=revert)}
    t = timeline(FlowShow.of(flow(state="REVERTED"), tasks, [], None, None), now=T + 100)
    execute, undo = t.tasks[0].attempts
    assert (execute.kind, execute.finished_at, execute.outcome) == ("execute", T + 2, "reverted")
    assert (undo.kind, undo.replica, undo.started_at, undo.finished_at, undo.outcome) == (
        "revert", "r2", T + 5, T + 6, "reverted")
    assert t.end == T + 6  # nothing open: the timeline ends with the last thing recorded, not now


def test_axis_steps_are_round_numbers_people_count_in() -> None:
    assert axis(12.0, 6) == [(0.0, "0s"), (2.0, "2s"), (4.0, "4s"), (6.0, "6s"), (8.0, "8s"), (10.0, "10s"),
                             (12.0, "12s")]
    assert [label for _, label in axis(1.0, 5)] == ["0.0s", "0.2s", "0.4s", "0.6s", "0.8s", "1.0s"]
    assert [label for _, label in axis(5400.0, 4)] == ["0s", "30m", "1h", "1h30m"]
    assert axis(0.0) == [(0.0, "0s")] and axis(float("nan")) == [(0.0, "0s")]
    assert len(axis(1e11, 10)) <= 11
    assert span_label(90) == "1m30s" and span_label(2 * 86400 + 3600) == "2d1h"


# ----------------------------------------------------------------- drawings


def by_class(root: ET.Element) -> dict[str, list[ET.Element]]:
    """The drawing's groups by their first class (attempt, takeover, replica...)."""
    found: dict[str, list[ET.Element]] = {}
    for g in root.iter(f"{SVG}g"):
        found.setdefault((g.get("class") or "").split()[0], []).append(g)
    return found


def test_the_svg_marks_attempts_takeovers_and_replicas_for_a_browser_test() -> None:
    t = timeline(killed(), now=T + 12)
    svg = to_svg(t)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.find(f"{SVG}style") is not None and "href=" not in svg
    found = by_class(root)
    attempts = [(g.get("data-task"), g.get("data-attempt"), g.get("data-replica"), g.get("data-outcome"))
                for g in found["attempt"]]
    assert attempts == [("fetch", "1", "replica-a", "retry"), ("fetch", "2", "replica-a", "success"),
                        ("build", "1", "replica-a", "in doubt"), ("build", "2", "replica-b", "running")]
    doubt = found["attempt"][2]
    assert "in-doubt" in doubt.get("class", "") and doubt.find(f"{SVG}text").text == "?"  # type: ignore[union-attr]
    assert "replica replica-a, epoch 1" in (doubt.find(f"{SVG}title").text or "")  # type: ignore[union-attr]
    assert "error: builtins.ValueError: boom" in (found["attempt"][0].find(f"{SVG}title").text or "")  # type: ignore[union-attr]
    [takeover] = found["takeover"]
    assert (takeover.get("data-from"), takeover.get("data-to"), takeover.get("data-epoch")) == (
        "replica-a", "replica-b", "2")
    assert "takeover: replica-a → replica-b" in "".join(takeover.itertext())
    assert takeover.find(f"{SVG}rect[@class='stood-still']") is not None
    assert [g.get("data-replica") for g in found["replica"]] == ["replica-a", "replica-b"]
    assert to_svg(timeline(killed(), now=T + 12)) == svg  # same records, same bytes


def test_a_replica_draws_as_the_last_letter_of_its_id_that_is_free() -> None:
    assert _symbols(["replica-B", "replica-A"]) == ["B", "A"]
    assert _symbols(["web-1", "web-11", "db"]) == ["1", "b", "d"]
    many = _symbols([f"r{n}" for n in range(200)])
    assert len(many) == 200 and all(len(c) == 1 for c in many)


def test_the_text_drawing_reads_as_a_chart() -> None:
    text = render_timeline(timeline(killed(), now=T + 12), width=80)
    lines = text.splitlines()
    build = next(line for line in lines if line.startswith("build"))
    assert re.search(r"a+\?b+>$", build)  # replica-a's attempt in doubt, then replica-b's, still running
    fetch = next(line for line in lines if line.startswith("fetch"))
    assert "x" in fetch and set(fetch.split()[1]) <= {"a", "x"}
    marker = lines[lines.index(next(line for line in lines if line.startswith("claims"))) - 1]
    assert marker.rstrip().endswith("|") and "-" in marker
    assert "takeover at +8.0s: replica-a → replica-b (epoch 2), stood still 5.9s" in lines
    assert "a  replica-a" in lines and "b  replica-b" in lines
    assert "0s" in text and "12.0s" in text and "\x1b" not in text
    coloured = render_timeline(timeline(killed(), now=T + 12), width=80, color=True)
    assert "\x1b[34m" in coloured and SGR.sub("", coloured) == text


def test_many_tasks_are_cut_to_a_drawable_number_of_rows() -> None:
    ids = [f"t{i}" for i in range(MAX_ROWS + 50)]
    tasks = {i: detail(i, SUCCESS, 1, T + n, T + n + 1, "r1", 1) for n, i in enumerate(ids)}
    t = timeline(FlowShow.of(flow(tasks=ids), tasks, [], None, None), now=T)
    svg = to_svg(t)
    assert svg.count('class="attempt ') == MAX_ROWS and "50 more tasks not drawn" in svg
    ET.fromstring(svg)
    assert "more tasks" in render_timeline(t)


# ------------------------------------------------------------------ hostile


HOSTILE = "<script>alert('x')</script>\x1b[2J\x1b]0;owned\x07\u202e\x00\"&"


def hostile() -> FlowShow:
    junk: list[Any] = [
        "not an object", 42, None, [1, 2],
        earlier(1, "yesterday", None, "in doubt", "r1", 1),  # a string for a time: no start, skipped
        earlier("two", T + 1, "later", ["x"], {"o": 1}, "3"),  # every other field of the wrong type
        earlier(3, float("nan"), None, "retry", "r1", 1),
        earlier(4, -5.0, None, "retry", "r1", 1),
        earlier(5, 1e308, None, "retry", "r1", 1),
        earlier(6, T + 2, T - 100, HOSTILE * 1000, HOSTILE, -1, HOSTILE * 1000),  # ends before it starts
    ]
    many = [earlier(i, T + 3 + i / 10000, T + 3.00005 + i / 10000, "retry", f"r{i}", i) for i in range(10_000)]
    claims: list[Any] = ["x", {"owner": HOSTILE, "claimed_at": T, "epoch": "1", "ended": 5},
                         {"owner": 7, "claimed_at": T}, {"owner": "r9", "claimed_at": "now"},
                         {"owner": "r2", "claimed_at": T + 4, "ended_at": float("inf"), "ended": "expired"}]
    tasks = {HOSTILE: detail(HOSTILE, RUNNING, "3", T + 1, None, HOSTILE, 1, many + junk),
             "odd": detail("odd", SUCCESS, 1, "soon", [], "r1", True, {"not": "a list"}),
             "bad": detail("bad", SUCCESS, 1, T + 2, T + 3, "r1", 1, None, revert="nope")}
    meta = {"claims": claims, "resumes": ["x", {"at": "y", "takeover": True}, {"epoch": 2, "takeover": True}]}
    return FlowShow.of(flow(meta=meta, tasks=[HOSTILE, "odd", "bad"], name=HOSTILE), tasks, [],
                       live(HOSTILE, 9, T + 5), None)


def test_hostile_records_draw_without_crashing_bounded_and_escaped() -> None:
    t = timeline(hostile(), now=T + 10)
    row, odd, bad = t.tasks
    assert len(row.attempts) <= ATTEMPTS_READ + 2 and all(a.started_at >= T for a in row.attempts)
    assert odd.attempts == [] and len(bad.attempts) == 1
    assert all(len(r) <= 200 for r in t.replicas) and all(len(a.error or "") <= 200 for a in t.attempts())
    json.dumps(t.to_json(), allow_nan=False)  # every time kept is a finite number

    svg = to_svg(t)
    root = ET.fromstring(svg)  # parses: no control character, no unescaped markup
    assert "<script" not in svg and "&lt;script&gt;" in svg and "\x1b" not in svg and "\u202e" not in svg
    tasks = [g.get("data-task") for g in root.iter(f"{SVG}g") if g.get("class") == "task"]
    assert tasks[0] is not None and tasks[0].startswith("<script>alert('x')</script>\\x1b[2J")
    assert all(e.tag in {f"{SVG}{n}" for n in ("svg", "title", "style", "defs", "pattern", "rect", "text", "g",
                                               "line")} for e in root.iter())

    text = render_timeline(t, width=100)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\x00" not in text
    assert "\x1b" not in SGR.sub("", render_timeline(t, width=100, color=True))  # only our colours
    assert max(len(line) for line in text.splitlines()) <= 300


def test_no_record_at_all_still_draws() -> None:
    empty = Timeline("", "", "", 0.0, 0.0, 0.0, [], [], [], [])
    ET.fromstring(to_svg(empty))
    assert render_timeline(empty)
    bare = timeline(FlowShow.of(flow(tasks=[]), {}, [], None, None), now=T)
    assert (bare.start, bare.end, bare.tasks, bare.claims) == (T - 0.5, T - 0.5, [], [])
    ET.fromstring(to_svg(bare))


# ---------------------------------------------------------------------- CLI


def test_show_timeline_svg_and_json(sqlite_backend: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    base = time.time() - 20  # the CLI draws up to its own clock
    s0 = detail("s0", SUCCESS, 2, base + 1, base + 2, "replica-a", 1,
                [earlier(1, base + 0.2, base + 0.5, "retry", "replica-a", 1, "builtins.ValueError: boom")])
    flow_id = store(sqlite_backend, RUNNING, tasks=[s0], name="evil\x1b[31m", meta={"claims": [
        {"epoch": 1, "owner": "replica-a", "claimed_at": base, "ended_at": None, "ended": None}]})
    token = sqlite_backend.claim(flow_id, "replica-b", 60.0)
    sqlite_backend.save_task(token, detail("s1", RUNNING, 2, base + 8, None, "replica-b", token.epoch,
                                   [earlier(1, base + 3, None, "in doubt", "replica-a", 1)]))

    text = run_cli(capsys, sqlite_backend, "show", flow_id[:8], "--timeline")
    assert text.code == 0 and "\x1b" not in text.stdout  # not a terminal: no colour, stored escapes shown
    assert re.search(r"^s1 +a+\?b+>$", text.stdout, re.MULTILINE) and "evil\\x1b[31m" in text.stdout
    assert "x" in next(line for line in text.stdout.splitlines() if line.startswith("s0"))

    doc = run_cli(capsys, sqlite_backend, "show", flow_id, "--timeline", "--json").json()
    assert doc.keys() == Ops(sqlite_backend).timeline(flow_id).to_json().keys() and doc["flow_id"] == flow_id
    assert [a["outcome"] for a in doc["tasks"][1]["attempts"]] == ["in doubt", "running"]
    assert [c["owner"] for c in doc["claims"]] == ["replica-a", "replica-b"]

    path = tmp_path / "flow.svg"
    out = run_cli(capsys, sqlite_backend, "show", flow_id, "--svg", str(path))
    assert out.code == 0 and out.stderr.strip() == f"wrote {path}" and "state" in out.stdout  # and the usual view
    root = ET.fromstring(path.read_text(encoding="utf-8"))
    assert [g.get("data-task") for g in by_class(root)["attempt"]] == ["s0", "s0", "s1", "s1"]

    for bad in (tmp_path / "no" / "such" / "folder.svg", tmp_path):
        refused = run_cli(capsys, sqlite_backend, "show", flow_id, "--timeline", "--svg", str(bad))
        assert bad_input(refused) and "cannot write" in refused.stderr
    assert not (tmp_path / "no").exists()
    assert " --svg " in completion_script(build_parser(), "bash")  # a file name is completed after --svg
