"""Fault injection: prove that no flow is lost, stranded or written by two owners.

Run it::

    python -m flowbaton.testing.chaos --backend zookeeper --flows 100 --replicas 3 \\
        --seed 7 --duration 60 --report chaos.json

It starts the backend (``sqlite``: a file; ``zookeeper``: a local ensemble of
three; ``redis``: a local primary, replica and three sentinels; or the URL of
servers you run), N real ``flowbaton replica`` processes on loopback, and
submits M flows while a seeded nemesis kills replicas mid-task, stops them
past their lease and lets them wake up (zombies), cuts them off from the
backend through proxies, restarts servers, kills ZooKeeper members and the
quorum, fails the Redis primary over, and deploys changed code between a
crash and its resume. Then it heals everything, waits for the flows to end,
and checks seven invariants against three independent records: the history
of every backend call the replicas made (``flowbaton.testing.recorder``), the
ledger the tasks wrote (``flowbaton.testing.ledger``) and the final store.
The same seed replays the same fault schedule.

Against your own flows: give ``--factory mypkg.flows:make --kwargs '{...}'
--allow mypkg.`` (the module must be importable from the current directory
or ``PYTHONPATH``). The history alone then tells which task started when
(each start follows an accepted RUNNING record); decorate task functions with
``flowbaton.testing.ledger.recorded`` (under ``@task``) to add the ledger's
independent evidence. Point ``--backend`` at a URL with a namespace of its
own; server faults need the local servers (``zookeeper``, ``redis``).

From Python: ``run_chaos(ChaosConfig(backend="sqlite", flows=50))`` returns
the report as a dict (``report["ok"]``, ``report["invariants"]``).
"""

from __future__ import annotations

from flowbaton.testing.chaos.run import ChaosConfig, run_chaos

__all__ = ["ChaosConfig", "run_chaos"]
