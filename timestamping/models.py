"""The stored log: entries, tree tiles, batches, signing keys' public halves and anchors.

Every row here is written once and never changed: on PostgreSQL triggers refuse UPDATE, DELETE and
TRUNCATE (migration 0002). Leaf indices are not stored per entry: a batch covers the entries whose
`seq` lies in (previous batch's last_seq, last_seq], in `seq` order, minus `skipped_seqs` (numbers
the database handed out to transactions that rolled back), so sealing writes no row per entry.
"""

from __future__ import annotations

import uuid

from django.db import models


class Entry(models.Model):
    # Ingestion order, from the database sequence; a batch orders its leaves by it.
    seq = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=64)
    received_at = models.DateTimeField()
    # RFC 8785 bytes exactly as hashed; never re-derived from a JSON column.
    canonical = models.BinaryField()
    leaf_hash = models.BinaryField(max_length=32, unique=True)
    set_note = models.TextField(help_text="Signed entry timestamp (a signed note).")
    idempotency_key = models.CharField(max_length=255, unique=True, null=True, blank=True)

    class Meta:
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"{self.kind} {self.uuid}"


class Tile(models.Model):
    """256 hashes of one tree level (C2SP tlog-tiles): level L holds the perfect subtrees of height
    8·L. A tile that is not yet full is stored at each width it had; wider ones are added, none
    rewritten."""

    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    width = models.PositiveSmallIntegerField()
    hashes = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["level", "index", "width"], name="tile_unique_width")
        ]

    def __str__(self) -> str:
        return f"tile {self.level}/{self.index} width {self.width}"


class Batch(models.Model):
    number = models.PositiveBigIntegerField(unique=True)
    # Unique: two batches can never claim the same predecessor, so a fork cannot be stored.
    prev_header_hash = models.BinaryField(max_length=32, unique=True)
    header = models.BinaryField(help_text="RFC 8785 bytes of the batch header.")
    header_hash = models.BinaryField(max_length=32, unique=True)
    prev_tree_size = models.PositiveBigIntegerField()
    tree_size = models.PositiveBigIntegerField(unique=True)
    root = models.BinaryField(max_length=32)
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField(unique=True)
    skipped_seqs = models.JSONField(default=list, blank=True)
    checkpoint = models.TextField(help_text="The signed checkpoint note.")
    sealed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"batch {self.number} (tree size {self.tree_size})"

    def leaf_index_of(self, seq: int) -> int:
        """Leaf index of the entry with this seq, which this batch covers."""
        skipped_before = sum(1 for skipped in self.skipped_seqs if skipped < seq)
        return self.prev_tree_size + (seq - self.first_seq) - skipped_before

    def seq_at(self, leaf_index: int) -> int:
        """The seq of the entry at this leaf index, which this batch covers."""
        seq = self.first_seq + (leaf_index - self.prev_tree_size)
        for skipped in sorted(self.skipped_seqs):
            if skipped <= seq:
                seq += 1
        return seq


class LogKey(models.Model):
    """The public half of every key that signed for this log, so old receipts keep verifying."""

    key_id = models.CharField(max_length=8, unique=True)
    verifier_key = models.CharField(max_length=255, unique=True)
    first_used_at = models.DateTimeField()

    class Meta:
        ordering = ["first_used_at"]

    def __str__(self) -> str:
        return self.verifier_key


class Anchor(models.Model):
    """Evidence from outside the log that a batch's checkpoint existed: an RFC 3161 time-stamp."""

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="anchors")
    type = models.CharField(max_length=16, default="rfc3161")
    # "builtin" for Veridict's own TSA, else the remote TSA's URL.
    tsa = models.CharField(max_length=255)
    tsr = models.BinaryField(help_text="The whole DER TimeStampResp.")
    anchored_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["type", "tsa", "batch"], name="anchor_once_per_batch")
        ]

    def __str__(self) -> str:
        return f"{self.type} anchor of batch {self.batch.number} by {self.tsa}"


class SealLock(models.Model):
    """One row; the sealer holds its row lock, so only one seal runs at a time on PostgreSQL."""

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return "seal lock"
