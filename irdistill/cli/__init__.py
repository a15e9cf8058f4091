"""The ``irdistill`` command line (heavy imports happen inside the commands)."""
