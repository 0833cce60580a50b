"""The operator API: read and manage stored flows and claims from Python.

The CLI is one caller of it; scripts are another. Actions
(``actions.release``/``cancel``/``retry``/``purge``, ``delete``) write the
way a replica does, under a fenced claim of their own; queries
(``query``, ``stranded``, ``check``) return typed documents (``documents``)
that the CLI renders as tables or JSON.
"""
