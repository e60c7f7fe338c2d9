"""The SFTP side (asyncssh): connections, downloads, the sync service.

asyncssh is loaded here first, before any module of this package: while it loads, it looks
for optional C libraries (nettle for the UMAC algorithms, liboqs for sntrup761) with
``ctypes.util.find_library``, whose fallbacks on Linux run a C compiler and the linker for
every library that is not installed (docs/ARCHITECTURE.md, "Start-up").
"""

from __future__ import annotations

import sys


def _load_asyncssh() -> None:
    """Import asyncssh with ``find_library`` answering from the loader's cache only."""
    if "asyncssh" in sys.modules:
        return
    import ctypes.util  # noqa: PLC0415 - only needed for this one import

    from_cache = getattr(ctypes.util, "_findSoname_ldconfig", None)
    if from_cache is None or not sys.platform.startswith("linux"):
        import asyncssh  # noqa: PLC0415 - elsewhere the stdlib's lookup is quick enough
        return
    original = ctypes.util.find_library
    ctypes.util.find_library = from_cache
    try:
        import asyncssh  # noqa: F401, PLC0415 - loaded once, here
    finally:
        ctypes.util.find_library = original


_load_asyncssh()
