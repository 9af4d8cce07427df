"""RFC 8785 canonical JSON for the ledger: the verifier's own implementation, so that the bytes a
leaf is hashed over and the bytes an auditor re-derives an opening from cannot drift apart."""

from veridict_verify.canonical import CanonicalizationError, dumps

__all__ = ["CanonicalizationError", "dumps"]
