"""The web console: a static single-page app under ``/console`` and the live job feed it listens to.

The page is plain HTML, CSS and ES modules (no build step, nothing fetched from elsewhere, so it works
offline). Everything it shows comes through the same public APIs as any other client: the Batch
REST-JSON API, the CloudWatch Logs JSON API, the native workflow API and ``/metrics``, each request
signed with SigV4 in the browser when the server checks signatures. The one thing added for it is
the job feed (``GET /api/jobs/events``, server-sent events), fed by the engine's status listener
seam: it tells the page *that* something changed, and the page reads *what* through the APIs.
"""

from __future__ import annotations

from openbatch.console.install import FEED_PATH, ROOT_PATH, Console, RootRedirect, console_files, install

__all__ = ["FEED_PATH", "ROOT_PATH", "Console", "RootRedirect", "console_files", "install"]
