"""Job working directories are made by the engine ahead of time and by the supervisor at launch, at once."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from openbatch.executors.local import make_job_dir


def test_two_makers_of_the_same_job_dir_both_succeed(tmp_path: Path) -> None:
    paths = [tmp_path / "work" / f"{shard:02x}" / f"job-{shard}" for shard in range(64)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def make_all() -> None:
        start.wait()
        for path in paths:
            try:
                make_job_dir(path)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=make_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(path.is_dir() for path in paths)
    # Shards are traversable, not listable, by other users.
    assert {stat.S_IMODE(path.parent.stat().st_mode) for path in paths} == {0o711}
