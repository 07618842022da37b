"""HLS AES-128 (RFC 8216 5.2): AES-128-CBC with PKCS#7 padding, the IV from the tag or the media
sequence number; a wrong key or damaged bytes are a DecryptionError, never garbage passed on."""

from __future__ import annotations

import pytest

from player.client.hls.aes import DecryptionError, clear_bytes, decrypt_aes128, encrypt_aes128, sequence_iv
from player.client.mpd.model import SegmentCipher

# NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt), first block.
NIST_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
NIST_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
NIST_PLAIN = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
NIST_CIPHER = bytes.fromhex("7649abac8119b246cee98e9b12e9197d")


def test_known_answer_and_pkcs7_round_trip() -> None:
    encrypted = encrypt_aes128(NIST_PLAIN, NIST_KEY, NIST_IV)
    assert encrypted[:16] == NIST_CIPHER and len(encrypted) == 32  # a whole block of padding follows
    assert decrypt_aes128(encrypted, NIST_KEY, NIST_IV) == NIST_PLAIN


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 188 * 7, 100_003])
def test_any_length_round_trips(size: int) -> None:
    data = bytes(k % 251 for k in range(size))
    assert decrypt_aes128(encrypt_aes128(data, NIST_KEY, NIST_IV), NIST_KEY, NIST_IV) == data


def test_the_iv_of_a_segment_without_one_is_its_media_sequence_number() -> None:
    assert sequence_iv(0) == bytes(16)
    assert sequence_iv(0x0102) == bytes(14) + b"\x01\x02"
    with pytest.raises(ValueError):
        sequence_iv(-1)


def test_a_wrong_key_or_a_cut_segment_is_a_decryption_error() -> None:
    encrypted = encrypt_aes128(b"x" * 1000, NIST_KEY, NIST_IV)
    wrong = bytes(16)
    failures = 0
    for key in (wrong, bytes(range(16)), bytes(range(1, 17))):
        try:
            decrypt_aes128(encrypted, key, NIST_IV)
        except DecryptionError:
            failures += 1
    assert failures >= 2  # random padding is valid by chance 1 time in ~256
    with pytest.raises(DecryptionError, match="not a whole number of 16-byte AES blocks"):
        decrypt_aes128(encrypted[:-1], NIST_KEY, NIST_IV)
    with pytest.raises(DecryptionError, match="not a whole number"):
        decrypt_aes128(b"", NIST_KEY, NIST_IV)


def test_clear_bytes_passes_clear_segments_and_needs_a_key_for_encrypted_ones() -> None:
    assert clear_bytes(None, b"plain") == b"plain"
    cipher = SegmentCipher(key_uri="http://k/key", iv=NIST_IV, key=NIST_KEY)
    assert clear_bytes(cipher, encrypt_aes128(b"media", NIST_KEY, NIST_IV)) == b"media"
    with pytest.raises(DecryptionError, match="no key was fetched"):
        clear_bytes(SegmentCipher(key_uri="http://k/key", iv=NIST_IV), b"\0" * 16)
