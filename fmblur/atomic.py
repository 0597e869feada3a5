"""Write files atomically: to a temporary sibling, renamed over the target only when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_target(target: str | os.PathLike, suffix: str = ".part") -> Iterator[Path]:
    """Yields a temporary path beside `target`; on success it becomes `target`, on any error it is deleted.

    The temporary name starts with a dot and ends in `suffix`, so a crash that skips the clean-up leaves
    an obviously partial file, never a file under the target's name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
