"""The operator API: read and manage stored flows and claims from Python.

The CLI is one caller of it; scripts are another. Actions
(``actions.release``/``cancel``/``retry``/``purge``, ``delete``,
``rollback.allow_stranded``) write the way a replica does, under a fenced
claim of their own; queries
(``query``, ``stranded``, ``check``; ``builds`` for releases of the
code) return typed documents (``documents``)
that the CLI renders as tables or JSON.
"""
