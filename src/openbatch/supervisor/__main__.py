from __future__ import annotations

import os
import sys

if "--detach" in sys.argv:
    # Started by a server: leave it at once (so it need not reap us), the supervisor going on as an
    # orphan in its own session. Forked before anything is imported or any thread exists.
    sys.argv.remove("--detach")
    if os.fork() > 0:
        os._exit(0)

# Imported after the fork, on purpose.
from openbatch.supervisor.daemon import main

sys.exit(main())
