"""flowbaton benchmarks, side by side with OpenStack TaskFlow: ``python -m bench``.

See ``bench/README.md`` for what each workload measures and the latest table.
``python bench/engine_overhead.py`` (engine cost alone) still runs as a script.
"""
