"""docs/tutorial.md, run: its commands, against a Redis of the test's own.

The page marks what a reader runs with an HTML comment before the block:

- ``<!-- tutorial: shell -->``: typed in the reader's own terminal (one
  bash for the whole page, so ``cd``, ``export`` and ``FLOW=...`` carry
  over); every line must exit 0;
- ``<!-- tutorial: file -->``: a file to save, named by the block's
  ``title="..."``, relative to where that terminal is;
- ``<!-- tutorial: replica -->``: ``cd`` lines and one command, started in a
  terminal of its own and left running;
- ``<!-- tutorial: kill -->``: shell lines that must kill the flow's owner
  with SIGKILL;
- ``<!-- tutorial: finished -->``: shell lines run once the flow has ended.

Everything else on the page (installing, starting Redis, outputs) is prose.
The blocks run in the page's order, under a HOME of the test's own, with
the page's Redis URL replaced by the test server's; then the test checks
what the page promises: the owner died of SIGKILL, a survivor finished the
flow, the step in doubt ran again and no finished step did, and Ctrl-C
stops the survivors cleanly.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import flowbaton.ops
from flowbaton.backends.states import SUCCESS, TERMINAL_FLOW_STATES
from tests.servers import until

PAGE = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
#: the store the page's commands name, replaced by the test server's
PAGE_URL = "redis://localhost:6379/0"
KINDS = ("shell", "file", "replica", "kill", "finished")
BLOCK = re.compile(r"<!-- tutorial: (\w+) -->\s*```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)
#: how long one command of the page may take (a CLI call takes under 1 s)
COMMAND_TIMEOUT = 30.0
#: how long the flow may take: about 12 s, the lease included
FLOW_TIMEOUT = 60.0


@dataclass(frozen=True)
class Block:
    kind: str
    info: str  # what follows the language on the fence: title="..."
    body: str

    def lines(self) -> list[str]:
        """The commands: continuation lines joined, blanks and comments dropped."""
        joined = re.sub(r"\\\n\s*", " ", self.body)
        return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    def title(self) -> str:
        match = re.search(r'title="([^"]+)"', self.info)
        assert match, f"a tutorial file block needs title=\"path\": {self.body[:60]!r}"
        return match[1]


def page_blocks(url: str) -> list[Block]:
    """The marked blocks of the page, in order, with ``url`` for the page's."""
    text = PAGE.read_text()
    blocks = [Block(kind, info, body) for kind, _, info, body in BLOCK.findall(text)]
    assert blocks, f"{PAGE} marks no block with <!-- tutorial: KIND -->"
    unknown = {b.kind for b in blocks} - set(KINDS)
    assert not unknown, f"unknown tutorial block kinds {unknown} (known: {KINDS})"
    assert text.count("<!-- tutorial:") == len(blocks), "a tutorial comment is not right before a ``` block"
    assert any(PAGE_URL in b.body for b in blocks), f"the page's commands no longer name {PAGE_URL}"
    quoted = shlex.quote(url)
    return [Block(b.kind, b.info, b.body if b.kind == "file" else b.body.replace(PAGE_URL, quoted))
            for b in blocks]


class Shell:
    """The reader's terminal: one bash fed line by line. Each line's output
    goes to a file and its exit status to another, so a line is waited
    for with a deadline and never blocks the test."""

    def __init__(self, folder: Path, cwd: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.count = 0
        self.proc = subprocess.Popen(["bash", "--norc", "--noprofile"], stdin=subprocess.PIPE, cwd=cwd,
                                     env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def run(self, line: str) -> str:
        """Run ``line`` in this shell; its output. It must exit 0."""
        self.count += 1
        out, status = self.folder / f"{self.count}.out", self.folder / f"{self.count}.status"
        partial = status.with_suffix(".partial")
        assert self.proc.stdin is not None
        # stdin from /dev/null: a command reading its input must not eat the lines after it
        self.proc.stdin.write(f"{{ {line}\n}} >{shlex.quote(str(out))} 2>&1 </dev/null; "
                              f"echo $? >{shlex.quote(str(partial))}; "
                              f"mv {shlex.quote(str(partial))} {shlex.quote(str(status))}\n")
        self.proc.stdin.flush()
        until(status.exists, COMMAND_TIMEOUT, f"`{line}` to finish")
        code, text = int(status.read_text()), out.read_text(errors="replace")
        assert code == 0, f"`{line}` exited {code}:\n{text}"
        return text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


@dataclass
class Replica:
    command: list[str]
    proc: subprocess.Popen[bytes]
    log: Path


class Tutorial:
    """What the page's reader has open: a shell, replica terminals, and
    (for the test only) the operator API on the same store."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.home = folder / "home"
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBATON_")}
        self.env.update(HOME=str(self.home), PYTHONUNBUFFERED="1",
                        PATH=os.pathsep.join([str(Path(sys.executable).parent), self.env.get("PATH", "")]))
        outputs = folder / "outputs"
        outputs.mkdir()
        self.shell = Shell(outputs, self.home, self.env)
        self.replicas: list[Replica] = []
        self.ops = flowbaton.ops.connect(url)
        self.output: list[str] = []  # every shell line and what it printed

    # ------------------------------------------------------------- blocks

    def shell_lines(self, block: Block) -> None:
        for line in block.lines():
            self.output.append(f"$ {line}\n{self.shell.run(line)}")

    def save_file(self, block: Block) -> None:
        where = Path(self.shell.run("pwd").strip()) / block.title()
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text(block.body)

    def start_replica(self, block: Block) -> None:
        cwd, command = self.home, None
        for line in block.lines():
            words = [self.home_path(word) for word in shlex.split(line)]
            if words[0] == "cd":
                cwd = cwd / words[1]
                continue
            assert command is None, f"a replica block runs one command, not also `{line}`"
            command = words
        assert command is not None, f"no command in the replica block {block.body!r}"
        program = shutil.which(command[0], path=self.env["PATH"])
        assert program, f"{command[0]} is not on PATH"
        log = self.folder / f"replica-{len(self.replicas) + 1}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([program, *command[1:]], cwd=cwd, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.replicas.append(Replica(command, proc, log))

    def home_path(self, word: str) -> str:
        """``~`` as the shell would expand it, for the lines the test splits itself."""
        return str(self.home) + word[1:] if word == "~" or word.startswith("~/") else word

    # ------------------------------------------------------------ watching

    def wait_replicas(self) -> None:
        """Every started replica is live in the store (the page lists them next)."""
        pids = {r.proc.pid for r in self.replicas}

        def live() -> bool:
            assert all(r.proc.poll() is None for r in self.replicas), self.logs()
            return pids <= {row.info.pid for row in self.ops.replicas().replicas}

        until(live, COMMAND_TIMEOUT, f"{len(pids)} replicas to register\n{self.logs()}")

    def owner(self) -> tuple[str, Replica]:
        """The flow's owner: its replica id and its process."""
        [claim] = until(self.ops.claims, COMMAND_TIMEOUT, "the flow to be claimed")
        [replica] = [r for r in self.replicas if r.proc.pid == claim.pid]
        return claim.claim.owner, replica

    def flow_id(self) -> str:
        [flow] = self.ops.flows()
        return flow.id

    def wait_ended(self, flow_id: str) -> None:
        until(lambda: self.ops.show(flow_id).flow.state in TERMINAL_FLOW_STATES, FLOW_TIMEOUT,
              f"flow {flow_id} to end\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"----- {shlex.join(r.command)} (exit {r.proc.poll()})\n"
                         f"{r.log.read_text(errors='replace')[-3000:]}" for r in self.replicas)

    def close(self) -> None:
        for replica in self.replicas:
            if replica.proc.poll() is None:
                replica.proc.kill()
            replica.proc.wait()
        self.shell.close()
        self.ops.close()


@pytest.fixture
def tutorial(redis_server: Any, tmp_path: Path) -> Iterator[Tutorial]:
    made = Tutorial(redis_server.url(namespace=f"tutorial{uuid.uuid4().hex[:10]}"), tmp_path)
    try:
        yield made
    finally:
        made.close()
        print("\n".join(made.output))  # shown when the test failed
        print(made.logs())


@pytest.mark.redis
@pytest.mark.slow
def test_the_tutorial_runs_as_written(tutorial: Tutorial) -> None:
    blocks = page_blocks(tutorial.url)
    kinds = [b.kind for b in blocks]
    assert kinds.count("replica") == 3 and kinds.count("kill") == 1 and "finished" in kinds, kinds
    assert kinds.index("file") < kinds.index("replica") < kinds.index("kill") < kinds.index("finished"), kinds
    dead: tuple[str, Replica] | None = None
    shown = None
    for block in blocks:
        if block.kind != "replica" and tutorial.replicas and dead is None:
            tutorial.wait_replicas()  # a reader goes on once the three are up
        if block.kind == "file":
            tutorial.save_file(block)
        elif block.kind == "replica":
            tutorial.start_replica(block)
        elif block.kind == "kill":
            dead = kill_owner(tutorial, block)
        elif block.kind == "finished" and shown is None:
            flow_id = tutorial.flow_id()
            tutorial.wait_ended(flow_id)
            shown = tutorial.ops.show(flow_id)
            tutorial.shell_lines(block)
        else:
            tutorial.shell_lines(block)
    assert dead is not None and shown is not None
    assert_finished_by_a_survivor(shown, dead[0], "\n".join(tutorial.output))
    stop_survivors(tutorial, dead[1])


def kill_owner(tutorial: Tutorial, block: Block) -> tuple[str, Replica]:
    """Run the kill block; the flow's owner (its id and process) must die of SIGKILL."""
    owner, replica = tutorial.owner()
    tutorial.shell_lines(block)
    until(lambda: replica.proc.poll() is not None, COMMAND_TIMEOUT, f"the owner {owner} to die")
    assert replica.proc.returncode == -signal.SIGKILL, tutorial.logs()
    return owner, replica


def assert_finished_by_a_survivor(shown: Any, dead: str, output: str) -> None:
    """SUCCESS, its last task run by another replica than ``dead``; the
    task ``dead`` was running ran twice, the ones it finished once."""
    assert shown.flow.state == SUCCESS, shown.flow
    tasks = shown.tasks
    assert tasks[-1].owner != dead and tasks[-1].state == SUCCESS, tasks[-1]
    by_dead = [t for t in tasks if t.owner == dead]
    assert by_dead and all(t.attempts == 1 for t in by_dead), by_dead  # nothing it finished ran again
    [in_doubt] = [t for t in tasks if t.attempts == 2]
    assert in_doubt.owner != dead and in_doubt.history[0]["outcome"] == "in doubt", in_doubt
    assert all(t.attempts == 1 for t in tasks if t is not in_doubt), tasks
    assert f"took over from {dead}" in output and "takeover at" in output, output


def stop_survivors(tutorial: Tutorial, dead: Replica) -> None:
    """Ctrl-C, as the page's clean-up says: each survivor stops with status 0."""
    survivors = [r for r in tutorial.replicas if r is not dead]
    for replica in survivors:
        replica.proc.send_signal(signal.SIGINT)
    until(lambda: all(r.proc.poll() is not None for r in survivors), COMMAND_TIMEOUT, "the survivors to stop")
    assert [r.proc.returncode for r in survivors] == [0] * len(survivors), tutorial.logs()
