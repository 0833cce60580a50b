"""What a replica tells the people running it: health facts and probes
(``/healthz``, ``/readyz``), Prometheus metrics, structured logs.

The runtime reports to a ``ReplicaObserver`` and never imports a metrics
library itself; everything here reads plain facts and imports only the
engine's events and the backends' records below it.
"""
