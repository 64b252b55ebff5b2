from __future__ import annotations

import sys

from openbatch.supervisor.daemon import main

sys.exit(main())
