"""The SFTP side (asyncssh): connections, downloads, the sync service.

asyncssh is loaded here first, before any module of this package: while it loads, it looks
for optional C libraries (nettle for the UMAC algorithms, liboqs for sntrup761) with
``ctypes.util.find_library``, whose fallbacks on Linux run a C compiler and the linker for
every library that is not installed (docs/ARCHITECTURE.md, "Start-up").
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def _load_asyncssh() -> None:
    """Import asyncssh with ``find_library`` answering from the loader's cache only."""
    if "asyncssh" in sys.modules:
        return
    import ctypes.util  # noqa: PLC0415 - only needed for this one import

    if getattr(ctypes.util, "_findSoname_ldconfig", None) is None or not sys.platform.startswith("linux"):
        import asyncssh  # noqa: PLC0415 - elsewhere the stdlib's lookup is quick enough
        return
    original = ctypes.util.find_library
    ctypes.util.find_library = _one_listing()  # type: ignore[assignment]  # the same signature
    try:
        import asyncssh  # noqa: F401, PLC0415 - loaded once, here
    finally:
        ctypes.util.find_library = original


def _one_listing() -> Callable[[str], str | None]:
    """``ctypes.util._findSoname_ldconfig``, the loader's cache as ``ldconfig -p`` lists it,
    with the listing read once for every name asked (asyncssh asks for up to five names,
    each a run of ``ldconfig``: ~5 ms of CPU each)."""
    import os  # noqa: PLC0415 - only needed for this one import
    import re  # noqa: PLC0415
    import struct  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    machine = os.uname().machine + ("-32" if struct.calcsize("l") == 4 else "-64")
    abi_type = {"x86_64-64": "libc6,x86-64", "ppc64-64": "libc6,64bit", "sparc64-64": "libc6,64bit",
                "s390x-64": "libc6,64bit", "ia64-64": "libc6,IA-64"}.get(machine, "libc6")
    listing: list[bytes] = []

    def find(name: str) -> str | None:
        if not listing:
            try:
                listing.append(subprocess.run(
                    ["/sbin/ldconfig", "-p"], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, env={"LC_ALL": "C", "LANG": "C"}, check=False).stdout)
            except OSError:
                listing.append(b"")
        found = re.search(os.fsencode(rf"\s+(lib{re.escape(name)}\.[^\s]+)\s+\({abi_type}"), listing[0])
        return os.fsdecode(found.group(1)) if found else None

    return find


_load_asyncssh()
