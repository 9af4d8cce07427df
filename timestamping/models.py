"""The stored log: entries, tree tiles, batches, signing keys' public halves and anchors.

Ledger rows (entries, tiles, batches, log keys, anchors) are written once and never changed: on
PostgreSQL triggers refuse UPDATE, DELETE and TRUNCATE (migration 0002). AnchorJob and SealLock
are bookkeeping, not ledger. Leaf indices are not stored per entry: a batch covers the entries whose
`seq` lies in (previous batch's last_seq, last_seq], in `seq` order, minus `skipped_ranges` (numbers
the database handed out to transactions that rolled back), so sealing writes no row per entry.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils.functional import cached_property

from timestamping.seq_ranges import SkippedSeqs


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
    # The opaque label of the stream (a system log) the domain put this entry in; "" for none.
    # The leaf names it too, so it cannot be changed without changing the leaf hash.
    stream = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        verbose_name_plural = "entries"
        indexes = [
            # An entry's position in its stream: the stream's entries of one batch, in seq order.
            models.Index(
                fields=["stream", "seq"], name="entry_stream_seq", condition=~models.Q(stream="")
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.uuid}"


class Tile(models.Model):
    """256 hashes of one tree level (C2SP tlog-tiles): level L holds the perfect subtrees of height
    8·L. A tile that is not yet full is stored at each width it had; wider ones are added, none
    rewritten. `stream` names the tree: "" for the global log, else a stream's own tree."""

    stream = models.CharField(max_length=64, blank=True, default="")
    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    width = models.PositiveSmallIntegerField()
    hashes = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "level", "index", "width"], name="tile_unique_stream_width"
            )
        ]

    def __str__(self) -> str:
        return f"tile {self.stream}:{self.level}/{self.index} width {self.width}"


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
    # The seqs in [first_seq, last_seq) that no entry holds, as sorted, merged [first, last] pairs
    # (inclusive): a rolled-back bulk of 10,000 records is one pair, not 10,000 numbers.
    skipped_ranges = models.JSONField(default=list, blank=True)
    checkpoint = models.TextField(help_text="The signed checkpoint note.")
    sealed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"batch {self.number} (tree size {self.tree_size})"

    @cached_property
    def skipped(self) -> SkippedSeqs:
        # Cached: a sealed batch never changes, and callers that place many entries of one batch
        # then pay for the running totals once.
        return SkippedSeqs.of(first_seq=self.first_seq, ranges=self.skipped_ranges)

    def leaf_index_of(self, seq: int) -> int:
        """Leaf index of the entry with this seq, which this batch covers."""
        return self.prev_tree_size + (seq - self.first_seq) - self.skipped.count_below(seq)

    def seq_at(self, leaf_index: int) -> int:
        """The seq of the entry at this leaf index, which this batch covers."""
        return self.skipped.seq_of_leaf(leaf_index - self.prev_tree_size)


class StreamHead(models.Model):
    """A stream's tree after a batch that added leaves to it: written once by the sealer, in the
    batch's transaction, and committed to by the batch header (v2). A stream's latest head is the
    one of its highest batch."""

    stream = models.CharField(max_length=64)
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="stream_heads")
    prev_size = models.PositiveBigIntegerField()
    size = models.PositiveBigIntegerField()
    root = models.BinaryField(max_length=32)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "batch"], name="streamhead_once_per_batch"),
            # Two heads can never claim the same size: a stream cannot fork either.
            models.UniqueConstraint(fields=["stream", "size"], name="streamhead_unique_size"),
        ]

    def __str__(self) -> str:
        return f"stream {self.stream} size {self.size} (batch {self.batch_id})"


# A stream leaf's index is counted, not stored (as the global log's): a mark every this many leaves
# of a stream bounds what is counted to less than this many index entries, whatever the stream's
# size or the size of the batch that sealed the leaf.
STREAM_MARK_EVERY = 256


class StreamMark(models.Model):
    """The seq of every STREAM_MARK_EVERY-th leaf of a stream's tree (leaf_index 0, 256, ...):
    written by the sealer with the stream's tiles, so that finding a leaf's index in its stream
    counts at most 255 of the stream's entries after the nearest mark (selectors.stream_leaf_index).
    An index of the entries, not a commitment: nothing in a header depends on it."""

    stream = models.CharField(max_length=64)
    leaf_index = models.PositiveBigIntegerField()
    seq = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "leaf_index"], name="streammark_unique_index"
            ),
            # Also the index of the lookup: the nearest mark at or below a seq.
            models.UniqueConstraint(fields=["stream", "seq"], name="streammark_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"stream {self.stream} leaf {self.leaf_index} is seq {self.seq}"


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
    """Evidence from outside the log that a batch's checkpoint existed, written once when the
    anchoring succeeded: an RFC 3161 time-stamp, or (type "ethereum") a transaction on a chain.

    The state of the attempts that led here (retries, errors, confirmations) is in AnchorJob,
    which changes; this row never does.
    """

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="anchors")
    type = models.CharField(max_length=16, default="rfc3161")
    # The configured backend that made it ("builtin" for Veridict's own TSA): the anchor source
    # that receipts and anchor jobs name.
    backend = models.CharField(max_length=64, default="builtin")
    # rfc3161: "builtin", else the remote TSA's URL; empty for other types.
    tsa = models.CharField(max_length=255, blank=True)
    tsr = models.BinaryField(blank=True, default=b"", help_text="The whole DER TimeStampResp.")
    # ethereum: where the transaction carrying SHA-256(checkpoint body) was included.
    chain_id = models.PositiveBigIntegerField(null=True, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=66, blank=True)
    block_time = models.DateTimeField(null=True, blank=True)
    anchored_at = models.DateTimeField()
    # Set on an anchor made again because a chain reorganisation dropped the one it names
    # (see AnchorReorg): each anchor is replaced at most once, so a batch has one live anchor
    # per backend and its dropped ones stay as they were written.
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["backend", "batch"],
                condition=models.Q(replaces__isnull=True),
                name="anchor_first_once_per_backend",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} anchor of batch {self.batch.number} by {self.backend}"


class AnchorReorg(models.Model):
    """A chain anchor that a reorganisation dropped: its block is no longer the chain's block at
    that height. Written once when the sweeper sees it (append-only, like the anchor it marks);
    receipts leave the anchor out from then on, and the checkpoint is anchored again."""

    anchor = models.OneToOneField(Anchor, on_delete=models.PROTECT, related_name="reorg")
    detected_at = models.DateTimeField()
    reason = models.TextField()

    def __str__(self) -> str:
        return f"reorganisation of {self.anchor}"


class AnchorJob(models.Model):
    """The changing state of one backend's anchoring of one batch: not ledger evidence, so not
    append-only. Outside backends get a job when their interval is due; the built-in TSA only
    when a stamp failed (its anchor row is its state otherwise)."""

    class Status(models.TextChoices):
        PENDING = "pending"  # not tried yet, or a try is running (see next_attempt_at)
        ANCHORED = "anchored"  # evidence stored; the backend waits for finality (confirmations)
        FINAL = "final"  # evidence stored and final: nothing left to do
        FAILED = "failed"  # the last try failed; the sweeper retries at next_attempt_at

    backend = models.CharField(max_length=64)
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="anchor_jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Tries started (a try cut short by a crash counts) and tries that failed.
    attempts = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # When the job may be tried next; while a try runs, the end of its lease.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Backend-specific state between tries (e.g. a submitted transaction, its confirmations).
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["backend", "batch"], name="anchor_job_once_per_batch")
        ]
        indexes = [
            models.Index(fields=["backend", "created_at"], name="anchorjob_backend_created"),
            # What the sweeper and the scheduler look for; few rows match, so partial indexes.
            models.Index(
                fields=["next_attempt_at"],
                name="anchorjob_open",
                condition=models.Q(status__in=["pending", "failed", "anchored"]),
            ),
            models.Index(
                fields=["backend"], name="anchorjob_failures", condition=models.Q(failures__gt=0)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.backend} anchoring of batch {self.batch.number}: {self.status}"


class SealLock(models.Model):
    """One row; the sealer holds its row lock, so only one seal runs at a time on PostgreSQL."""

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return "seal lock"
