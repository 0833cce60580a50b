"""Two releases of one factory module for the rolling-upgrade tests.

``v1/upflows.py`` (build 1.0) and ``v2/upflows.py`` (build 2.0) are the
same module ``upflows`` as two releases ship it: a replica runs one or the
other depending on which folder is on its PYTHONPATH, like two container
images of one service. v2 added step ``x`` between ``b`` and ``c``, so a
flow finished on v1 code after v2 code ran it would end without ``x``. The
steps both share are here, so the two releases differ only in the flow.
"""
