"""Programs the executor runs in place of a container runtime (``python -m openbatch.runners.…``)."""
