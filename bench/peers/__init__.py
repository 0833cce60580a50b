"""Drivers of peer systems, run in their own virtualenvs (see ``bench/venv.py``).

Each ``taskflow_*.py`` here is our own code calling TaskFlow's public API;
nothing of TaskFlow is copied. ``common.py`` is plain standard library so
both sides (flowbaton in the project's interpreter, TaskFlow in its venv)
write the same ledger and speak the same line protocol.
"""
