"""The demo's flows: code that ships with the package so ``flowbaton demo``
(and the failover benchmark) have a factory to store and rebuild. It uses
only the public engine, like a service's own flows module would."""
