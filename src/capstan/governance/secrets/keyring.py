"""The master keyring: the AES-256-GCM keys that seal secrets at rest.

One key encrypts (the current key); every other loaded key only decrypts, so a rotation can move
rows from one key to the next without a moment where some row cannot be read. Each ciphertext is
stored with the id of the key that sealed it, which is how decryption picks its key.

Where the key comes from:
- `CAPSTAN_MASTER_KEY` (base64 of 32 bytes), for replicas that must share one key and for
  operators who keep keys in a secret manager rather than on disk;
- otherwise `$CAPSTAN_HOME/master.key`, generated on first load (mode 0600, home 0700).
Older keys that still decrypt come from `CAPSTAN_PREVIOUS_MASTER_KEYS` and from the staging file a
rotation leaves behind (`master.key.next` in file mode, `master.key.new` in env mode), so a crash
at any step of a rotation leaves every row readable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from capstan.config import Settings
from capstan.errors import CapstanError, ConfigError

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_CHARS = 16
ENV_KEY = "CAPSTAN_MASTER_KEY"
ENV_PREVIOUS = "CAPSTAN_PREVIOUS_MASTER_KEYS"
NEXT_SUFFIX = ".next"
NEW_KEY_FILE = "master.key.new"

KeySource = Literal["env", "file"]


class UnknownMasterKey(ConfigError):
    """A ciphertext names a key that is not loaded: the key that sealed it was not configured."""

    def __init__(self, key_id: str, loaded: list[str]) -> None:
        super().__init__(
            f"no master key with id {key_id} is loaded (loaded: {', '.join(loaded)}); "
            f"add the key that sealed it to {ENV_PREVIOUS}",
            field="master_key",
            key_id=key_id,
        )


class DecryptionFailed(CapstanError):
    """GCM authentication failed: the ciphertext, its nonce or what it is bound to was altered."""

    slug = "decryption-failed"
    title = "Decryption failed"


class Sealed(NamedTuple):
    """What `encrypt` returns and a row stores: the key's id, the nonce and the ciphertext."""

    key_id: str
    nonce: bytes
    ciphertext: bytes


def key_id_of(raw: bytes) -> str:
    """A short, stable name for a key; a truncated hash names the key without revealing it."""
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_CHARS]


def encode_key(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_key(text: str, label: str) -> bytes:
    """The 32 raw bytes of a base64 key (url-safe or standard alphabet, padding optional).

    The error names where the key came from and never echoes the value, which is key material."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ConfigError(f"{label}: not valid base64", field="master_key") from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(
            f"{label}: a master key is {KEY_BYTES} bytes, base64-encoded; this one is "
            f"{len(raw)} bytes",
            field="master_key",
        )
    return raw


@dataclass(frozen=True, slots=True)
class StagedRotation:
    """A new key that is already durable on disk, and the keyring that encrypts with it."""

    keyring: MasterKeyring
    retired_key_id: str
    staged_file: Path
    resumed: bool


class MasterKeyring:
    def __init__(
        self,
        settings: Settings,
        source: KeySource,
        primary: bytes,
        older: list[bytes] | None = None,
        pending: bytes | None = None,
    ) -> None:
        """`primary` is the configured key; `pending` a rotation's staged key, if one is on disk.

        In file mode a pending key also encrypts: from the moment `master.key.next` exists it is
        the key the rows are moving to, so a secret written during (or after a crash in) a
        rotation never lands under the key that the rotation is about to retire. In env mode the
        operator's key keeps encrypting until they switch `CAPSTAN_MASTER_KEY` themselves."""
        self.settings = settings
        self.source: KeySource = source
        self._primary = primary
        self._pending = pending if pending != primary else None
        self._current = self._pending if source == "file" and self._pending else primary
        keys = [self._current, primary, *(older or []), *([pending] if pending else [])]
        self._keys = {key_id_of(key): key for key in keys}

    @classmethod
    def load(cls, settings: Settings, *, create: bool = True) -> MasterKeyring:
        """The keyring `settings` describe; in file mode, a missing key file is generated unless
        `create` is false (a running process re-reading its keys must never mint a new one)."""
        older = [
            decode_key(key.get_secret_value(), f"{ENV_PREVIOUS}[{index}]")
            for index, key in enumerate(settings.previous_master_keys)
        ]
        if settings.master_key is not None:
            primary = decode_key(settings.master_key.get_secret_value(), ENV_KEY)
            return cls(settings, "env", primary, older, _read_key(settings.home / NEW_KEY_FILE))
        path = settings.master_key_file
        existing = _read_key(path)
        if existing is None and not create:
            raise ConfigError(f"{path}: the master key file is missing", field="master_key")
        primary = existing if existing is not None else _create_key_file(path)
        return cls(settings, "file", primary, older, _read_key(_next_file(path)))

    def reloaded(self) -> MasterKeyring:
        """The keyring as the settings and files describe it now, so a long-running process sees
        a rotation made by another one (`capstan secrets rotate-master-key`)."""
        return MasterKeyring.load(self.settings, create=False)

    @property
    def current_key_id(self) -> str:
        return key_id_of(self._current)

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    @property
    def staging_file(self) -> Path:
        """Where a rotation puts the new key before any row uses it."""
        if self.source == "env":
            return self.settings.home / NEW_KEY_FILE
        return _next_file(self.settings.master_key_file)

    def encrypt(self, plaintext: bytes, aad: bytes) -> Sealed:
        """Seal under the current key with a fresh random nonce.

        `aad` is authenticated but not stored: the caller passes what the ciphertext belongs to
        (the secret's organization and name), so a ciphertext copied onto another row fails to
        decrypt instead of quietly handing one secret's value out under another's name. A random
        96-bit nonce per message keeps the chance of a repeat negligible for far more messages
        than a control plane will ever seal under one key."""
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(self._current).encrypt(nonce, plaintext, aad)
        return Sealed(self.current_key_id, nonce, ciphertext)

    def decrypt(self, key_id: str, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownMasterKey(key_id, self.key_ids)
        try:
            return AESGCM(key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise DecryptionFailed(
                f"a secret sealed under key {key_id} failed authentication: its ciphertext, nonce "
                "or the organization and name it is bound to were altered"
            ) from None

    # -- rotation -------------------------------------------------------------------------------

    def stage_rotation(self) -> StagedRotation:
        """Step 1 of a rotation: make the new key durable before any row is sealed under it.

        A staged key left by an interrupted rotation is reused rather than replaced: some rows
        may already be sealed under it, and overwriting its file would lose them."""
        if self._pending is not None:
            new, resumed = self._pending, True
        else:
            new, resumed = os.urandom(KEY_BYTES), False
            _write_key_file(self.staging_file, new)
        keyring = MasterKeyring(self.settings, self.source, new, list(self._keys.values()))
        return StagedRotation(keyring, key_id_of(self._primary), self.staging_file, resumed)

    def complete_rotation(self, staged: StagedRotation) -> None:
        """Last step, after the re-encrypted rows are committed: in file mode the staged key
        becomes `master.key`. In env mode the operator moves the key; nothing changes here."""
        if self.source == "file":
            os.replace(staged.staged_file, self.settings.master_key_file)
            _fsync_dir(self.settings.master_key_file.parent)


# -- key files ----------------------------------------------------------------------------------


def _next_file(path: Path) -> Path:
    return path.with_name(path.name + NEXT_SUFFIX)


def _read_key(path: Path) -> bytes | None:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the key file: {exc}", field="master_key") from exc
    return decode_key(text, str(path))


def _ensure_home(home: Path) -> None:
    """Create the home folder owner-only: it holds the key and the database."""
    if not home.exists():
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)


def _write_temp(path: Path, raw: bytes) -> Path:
    """A fully written, fsynced, owner-only (0600) temp file beside `path`; O_EXCL so it can
    never be a file (or link) planted there in advance."""
    _ensure_home(path.parent)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o600)
    try:
        os.write(fd, (encode_key(raw) + "\n").encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temp


def _write_key_file(path: Path, raw: bytes) -> None:
    """Replace `path` atomically: readers see the old key file or the new one, never half."""
    temp = _write_temp(path, raw)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _create_key_file(path: Path) -> bytes:
    """A new master key, unless another process created one first: then that one.

    `os.link` publishes the complete file only if the name is free, so two processes starting
    at once agree on one key instead of the second silently replacing the first's."""
    raw = os.urandom(KEY_BYTES)
    temp = _write_temp(path, raw)
    try:
        os.link(temp, path)
    except FileExistsError:
        winner = _read_key(path)
        if winner is None:  # pragma: no cover - created and deleted in between
            raise ConfigError(f"{path}: the key file vanished while it was created") from None
        return winner
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return raw


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: the directory entry must reach the disk, not only the file."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
