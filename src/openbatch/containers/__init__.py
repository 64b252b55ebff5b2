"""Containers for jobs: a job's ``image`` run with bubblewrap or podman (see ``runtimes.py``)."""
