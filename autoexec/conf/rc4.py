"""RC4 as neatlogic uses it: config secrets, node passwords and the Tagent handshake.

RC4 is weak; it is kept only because the console, the agents and existing tools speak it.
pycryptodome is imported at the first use: loading it (with cffi parsing its C declarations) is a
noticeable part of a CLI start, and most jobs decrypt nothing.
"""
from __future__ import annotations


def rc4(key: bytes, data: bytes) -> bytes:
    """Encrypt or decrypt (RC4 is symmetric). pycryptodome requires a key of 5..256 bytes, so
    shorter keys are repeated, which yields the same key schedule as the plain KSA."""
    from Crypto.Cipher import ARC4

    if not key:
        raise ValueError("RC4 key is empty")
    if len(key) < 5:
        key = key * -(-5 // len(key))  # a whole number of repeats keeps key[i % len] unchanged
    return ARC4.new(key[:256]).encrypt(data)
