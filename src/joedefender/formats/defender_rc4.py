"""RC4 with Defender's fixed quarantine key (../shared/reference/defender-quarantine.md section 2).

RC4 runs in libcrypto through ctypes when the system has it (hundreds of MB/s; `cryptography`'s
ARC4 takes keys of at most 32 bytes, Defender's is 256), else in pure Python (a few MB/s).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

# Defender's fixed RC4 key (public: in mpengine.dll and every open-source decoder).
RC4_KEY = bytes.fromhex(
    "1E87781B8DBAA844CE69702C0C78B786A3F623B738F5EDF9AF83530FB3FC54FAA21EB9CF1331FD0F0DA954F687CB9E18"
    "279697900E53FB317C9CBCE48E23D05371ECC15951B8F3649D7CA33ED68DC9047E82C9BAAD9799D0D458CB847CA9FFBE"
    "3C8A775233557DDE13A8B14087CC1BC8F10F6ECDD083A959CFF84A9D1D50755E3E191818AF23E2293558766D2C07E257"
    "12B2CA0B535ED8F6C56CE73D24BDD0291771861A54B4C285A9A3DB7ACA6D224AEACD621DB9F2A22ED1E9E11D75BED7DC"
    "0ECB0A8E68A2FF1263408DC808DFFD164B116774CD0B9B8D05411ED6262E429BA495676B8398DB2F35D3C1B9CED52636"
    "F2765E1A95CB7CA4C3DDABDDBFF38253"
)


@cache
def _libcrypto() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.RC4_set_key.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
        lib.RC4_set_key.restype = None
        lib.RC4.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        lib.RC4.restype = None
    except (OSError, AttributeError):  # no libcrypto, or one built without RC4
        return None
    return lib


class Rc4:
    """RC4 (standard KSA and PRGA) over a stream that arrives in chunks."""

    def __init__(self, key: bytes = RC4_KEY, *, native: bool = True) -> None:
        self._lib = _libcrypto() if native else None
        if self._lib is not None:
            # RC4_KEY is two ints and 256 ints; twice that leaves room for any RC4_INT width.
            self._state = ctypes.create_string_buffer(2 * (2 + 256) * 8)
            self._lib.RC4_set_key(self._state, len(key), key)
            return
        s = list(range(256))
        j = 0
        for i in range(256):
            j = (j + s[i] + key[i % len(key)]) & 0xFF
            s[i], s[j] = s[j], s[i]
        self._s, self._i, self._j = s, 0, 0

    @property
    def native(self) -> bool:
        return self._lib is not None

    def apply(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._lib is not None:
            out = ctypes.create_string_buffer(len(data))
            self._lib.RC4(self._state, len(data), bytes(data), out)
            return out.raw
        s, i, j = self._s, self._i, self._j
        out_bytes = bytearray(data)
        for n in range(len(out_bytes)):
            i = (i + 1) & 0xFF
            si = s[i]
            j = (j + si) & 0xFF
            sj = s[j]
            s[i], s[j] = sj, si
            out_bytes[n] ^= s[(si + sj) & 0xFF]
        self._i, self._j = i, j
        return bytes(out_bytes)


def rc4(data: bytes) -> bytes:
    """One RC4 pass from a fresh state with Defender's key (each Entries part restarts it)."""
    return Rc4().apply(data)
