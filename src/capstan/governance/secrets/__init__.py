"""Secrets encrypted at rest: the master keyring (AES-256-GCM) and the audited vault."""

from capstan.governance.secrets.keyring import (
    DecryptionFailed,
    MasterKeyring,
    Sealed,
    UnknownMasterKey,
)
from capstan.governance.secrets.vault import SecretVault

__all__ = ["DecryptionFailed", "MasterKeyring", "Sealed", "SecretVault", "UnknownMasterKey"]
