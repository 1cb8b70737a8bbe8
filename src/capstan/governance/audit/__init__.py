"""The tamper-evident audit chain."""

from capstan.governance.audit.chain import (
    GENESIS_HASH,
    ChainBreak,
    digest,
    entry_hash,
    verify_chain,
)
from capstan.governance.audit.log import AuditLog, AuditRecord

__all__ = [
    "GENESIS_HASH",
    "AuditLog",
    "AuditRecord",
    "ChainBreak",
    "digest",
    "entry_hash",
    "verify_chain",
]
