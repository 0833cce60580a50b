"""The ``flowbaton`` command: the standalone replica, submit and wait, the
operator commands and the demo. Parsing, rendering and exit codes live
here; what each command does lives in ``flowbaton.ops`` and
``flowbaton.coordinator``."""
