"""HLS whole-segment decryption (METHOD=AES-128, RFC 8216 section 5.2): AES-128-CBC with PKCS#7
padding, restarted on every segment with the IV of its EXT-X-KEY or, without one, its media
sequence number. Applied to the fetched bytes before they are decoded.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from player.client.mpd.model import SegmentCipher

_BLOCK_BYTES = 16


class DecryptionError(ValueError):
    """The bytes are not a whole number of AES blocks, or their padding is wrong (often: a wrong key)."""


def sequence_iv(media_sequence: int) -> bytes:
    """The IV of a segment whose EXT-X-KEY has none: its media sequence number as a big-endian
    128-bit integer (RFC 8216 5.2)."""
    if not 0 <= media_sequence < 2**128:
        raise ValueError(f"media sequence number {media_sequence} does not fit in 128 bits")
    return media_sequence.to_bytes(_BLOCK_BYTES, "big")


def decrypt_aes128(data: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-128-CBC decryption and PKCS#7 unpadding of one whole segment."""
    if len(key) != _BLOCK_BYTES or len(iv) != _BLOCK_BYTES:
        raise ValueError("AES-128 needs a 16-byte key and a 16-byte IV")
    if not data or len(data) % _BLOCK_BYTES:
        raise DecryptionError(f"{len(data)} bytes is not a whole number of 16-byte AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= _BLOCK_BYTES or plain[-pad:] != bytes([pad]) * pad:
        raise DecryptionError("the PKCS#7 padding is wrong: a wrong key or IV, or a damaged segment")
    return plain[:-pad]


def encrypt_aes128(data: bytes, key: bytes, iv: bytes) -> bytes:
    """The inverse of `decrypt_aes128` (what a packager does; tests use it)."""
    pad = _BLOCK_BYTES - len(data) % _BLOCK_BYTES
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()


def clear_bytes(cipher: SegmentCipher | None, data: bytes) -> bytes:
    """The plain bytes of a fetched segment (unchanged when it has no whole-segment encryption)."""
    if cipher is None:
        return data
    if cipher.key is None:
        raise DecryptionError(f"no key was fetched for the segment (key URI {cipher.key_uri})")
    return decrypt_aes128(data, cipher.key, cipher.iv)
