"""Testing tools shipped with flowbaton, for its own tests and for yours.

- ``flowbaton.testing.chaos``: the fault-injection harness
  (``python -m flowbaton.testing.chaos --help``, and docs/chaos.md).
- ``flowbaton.testing.recorder``: a Backend wrapper that logs every claim and
  fenced write a replica attempts (switched on by ``FLOWBATON_RECORD_WRITES``).
- ``flowbaton.testing.ledger``: an external record of task executions for
  your own tasks (``@recorded``).
- ``flowbaton.testing.servers``: local ZooKeeper and Redis servers with fault
  injectors (kill, pause, restart, quorum loss, Sentinel failover).

Nothing here is imported by the library itself unless those environment
variables are set.
"""
