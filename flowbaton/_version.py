"""The release number, in one place: ``pyproject.toml`` reads it from here
(``tool.setuptools.dynamic``), and every layer may import it (it imports
nothing), e.g. a replica announcing its version."""

__version__ = "0.1.0"
