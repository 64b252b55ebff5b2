"""Ray compute environments: attempts run as processes on the nodes of a Ray cluster.

``environments.py`` binds compute environments to a cluster (tags, see ``executors/binding.py``);
``cluster.py`` is the server's side (executor and capacity); ``dispatcher.py`` the detached actor
that owns the attempts on the cluster; ``task.py`` what runs on a node. Every node needs the same
``openbatch``, Ray and Python versions as the server (``pip install 'openbatch[ray]'``).
"""

from __future__ import annotations
