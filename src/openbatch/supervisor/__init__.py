"""The per-host supervisor: a process apart from the server that owns every attempt's processes.

Like containerd-shim or slurmstepd, it keeps jobs running when the server stops or crashes,
records each attempt durably before starting it (so no attempt starts twice), writes the
attempt's log and exit status, and reports exits to whichever server is connected. See
``daemon.py`` for the process and ``client.py`` for the executor the server uses.
"""
