"""Writes to the log: appending entries, sealing batches, anchoring checkpoints."""

from .anchoring import batch_anchor_builtin
from .entries import EnvelopeError, entry_append
from .sealing import batch_seal

__all__ = ["EnvelopeError", "batch_anchor_builtin", "batch_seal", "entry_append"]
