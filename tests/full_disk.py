"""A disk that fills up: a small tmpfs mounted for one test, and a file that fills it.

Mounting needs root (CAP_SYS_ADMIN); where it is refused, the test is skipped saying so.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["fill", "small_tmpfs"]


@contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """``where``, a tmpfs of ``size`` for the duration; unmounted after, even if still busy."""
    where.mkdir(parents=True, exist_ok=True)
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("a full disk is a small filesystem of the test's own: `mount` is missing")
    mounted = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True, timeout=30, check=False)
    if mounted.returncode != 0:
        pytest.skip("a full disk is a small filesystem of the test's own, and mounting a tmpfs"
                    f" was refused (it needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run([umount, "--lazy", str(where)], check=True, timeout=30)


def fill(where: Path) -> Path:
    """Write a file in ``where`` until its filesystem has no room left; delete the file to
    free it again."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0"):  # then byte by byte, to the very last
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler
