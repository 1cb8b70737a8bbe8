"""The master keyring: sealing, key sources, key files and decryption-only older keys."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from capstan.config import Settings
from capstan.errors import ConfigError
from capstan.governance.secrets.keyring import (
    DecryptionFailed,
    MasterKeyring,
    UnknownMasterKey,
    encode_key,
)

AAD = b"capstan-secret:v1:org:openai"
KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))


def env_settings(home: Path, key: bytes, *previous: bytes) -> Settings:
    return Settings(
        home=home,
        master_key=SecretStr(encode_key(key)),
        previous_master_keys=[SecretStr(encode_key(p)) for p in previous],
    )


def file_settings(home: Path) -> Settings:
    return Settings(home=home)


def test_round_trip_returns_the_plaintext(tmp_path: Path) -> None:
    keyring = MasterKeyring.load(env_settings(tmp_path, KEY_A))
    sealed = keyring.encrypt(b"sk-live-123", AAD)
    assert keyring.decrypt(sealed.key_id, sealed.nonce, sealed.ciphertext, AAD) == b"sk-live-123"


def test_each_encryption_uses_a_fresh_nonce(tmp_path: Path) -> None:
    keyring = MasterKeyring.load(env_settings(tmp_path, KEY_A))
    first, second = keyring.encrypt(b"same", AAD), keyring.encrypt(b"same", AAD)
    assert len(first.nonce) == 12
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_key_id_is_the_first_16_hex_chars_of_the_keys_sha256(tmp_path: Path) -> None:
    keyring = MasterKeyring.load(env_settings(tmp_path, KEY_A))
    assert keyring.current_key_id == hashlib.sha256(KEY_A).hexdigest()[:16]
    assert keyring.encrypt(b"x", AAD).key_id == keyring.current_key_id


def test_tampered_ciphertext_fails_to_decrypt(tmp_path: Path) -> None:
    keyring = MasterKeyring.load(env_settings(tmp_path, KEY_A))
    sealed = keyring.encrypt(b"sk-live-123", AAD)
    tampered = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(DecryptionFailed):
        keyring.decrypt(sealed.key_id, sealed.nonce, tampered, AAD)


def test_different_aad_fails_to_decrypt(tmp_path: Path) -> None:
    keyring = MasterKeyring.load(env_settings(tmp_path, KEY_A))
    sealed = keyring.encrypt(b"sk-live-123", AAD)
    with pytest.raises(DecryptionFailed):
        keyring.decrypt(sealed.key_id, sealed.nonce, sealed.ciphertext, b"another:row")


def test_unknown_key_id_error_names_the_missing_key(tmp_path: Path) -> None:
    keyring = MasterKeyring.load(env_settings(tmp_path, KEY_A))
    with pytest.raises(UnknownMasterKey, match="0123456789abcdef"):
        keyring.decrypt("0123456789abcdef", b"\0" * 12, b"x" * 32, AAD)


def test_file_key_is_generated_on_first_load_with_mode_0600(tmp_path: Path) -> None:
    home = tmp_path / "home"
    MasterKeyring.load(file_settings(home))
    key_file = home / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    text = key_file.read_text()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert len(base64.urlsafe_b64decode(text.strip())) == 32


def test_file_key_is_reused_by_later_loads(tmp_path: Path) -> None:
    first = MasterKeyring.load(file_settings(tmp_path))
    sealed = first.encrypt(b"kept", AAD)
    second = MasterKeyring.load(file_settings(tmp_path))
    assert second.current_key_id == first.current_key_id
    assert second.decrypt(*sealed, AAD) == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]  # no temp files left over


def test_env_key_takes_precedence_and_writes_no_file(tmp_path: Path) -> None:
    keyring = MasterKeyring.load(env_settings(tmp_path, KEY_A))
    assert keyring.source == "env"
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize(
    "bad",
    [
        "not base64 at all!",
        encode_key(b"too short"),
        encode_key(bytes(33)),
        "",
    ],
)
def test_malformed_env_key_gives_config_error_naming_capstan_master_key(
    tmp_path: Path, bad: str
) -> None:
    settings = Settings(home=tmp_path, master_key=SecretStr(bad))
    with pytest.raises(ConfigError, match=r"^CAPSTAN_MASTER_KEY: ") as caught:
        MasterKeyring.load(settings)
    if bad:
        assert bad not in caught.value.detail  # key material is never echoed


def test_standard_and_unpadded_base64_are_accepted(tmp_path: Path) -> None:
    standard = base64.b64encode(KEY_B).decode()
    unpadded = encode_key(KEY_B).rstrip("=")
    for text in (standard, unpadded):
        keyring = MasterKeyring.load(Settings(home=tmp_path, master_key=SecretStr(text)))
        assert keyring.current_key_id == hashlib.sha256(KEY_B).hexdigest()[:16]


def test_a_previous_key_still_decrypts(tmp_path: Path) -> None:
    sealed = MasterKeyring.load(env_settings(tmp_path, KEY_A)).encrypt(b"old secret", AAD)
    rotated = MasterKeyring.load(env_settings(tmp_path, KEY_B, KEY_A))
    assert rotated.decrypt(*sealed, AAD) == b"old secret"
    assert rotated.encrypt(b"new", AAD).key_id != sealed.key_id


def test_malformed_previous_key_is_named_by_position(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        master_key=SecretStr(encode_key(KEY_A)),
        previous_master_keys=[SecretStr(encode_key(KEY_B)), SecretStr("nope")],
    )
    with pytest.raises(ConfigError, match=r"CAPSTAN_PREVIOUS_MASTER_KEYS\[1\]"):
        MasterKeyring.load(settings)


def test_a_staged_next_key_decrypts_and_encrypts_in_file_mode(tmp_path: Path) -> None:
    old = MasterKeyring.load(file_settings(tmp_path))
    sealed_old = old.encrypt(b"under old", AAD)
    (tmp_path / "master.key.next").write_text(encode_key(KEY_B) + "\n")
    during = MasterKeyring.load(file_settings(tmp_path))
    sealed_new = during.encrypt(b"under next", AAD)
    assert sealed_new.key_id == hashlib.sha256(KEY_B).hexdigest()[:16]
    assert during.decrypt(*sealed_old, AAD) == b"under old"
    assert during.decrypt(*sealed_new, AAD) == b"under next"


def test_staging_a_rotation_writes_the_next_key_0600_before_any_row_uses_it(
    tmp_path: Path,
) -> None:
    keyring = MasterKeyring.load(file_settings(tmp_path))
    staged = keyring.stage_rotation()
    assert staged.staged_file == tmp_path / "master.key.next"
    assert stat.S_IMODE(staged.staged_file.stat().st_mode) == 0o600
    assert staged.retired_key_id == keyring.current_key_id
    assert staged.keyring.current_key_id != keyring.current_key_id
    assert MasterKeyring.load(file_settings(tmp_path)).current_key_id == (
        staged.keyring.current_key_id
    )
    keyring.complete_rotation(staged)
    assert not staged.staged_file.exists()
    assert MasterKeyring.load(file_settings(tmp_path)).key_ids == [staged.keyring.current_key_id]


def test_reloading_never_creates_a_missing_key_file(tmp_path: Path) -> None:
    keyring = MasterKeyring.load(file_settings(tmp_path))
    os.remove(tmp_path / "master.key")
    with pytest.raises(ConfigError, match="missing"):
        keyring.reloaded()
