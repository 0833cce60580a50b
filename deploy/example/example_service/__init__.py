"""An example service for deploy/: the code a replica image adds on top of flowbaton."""
