"""The verifiable log engine: entries, the Merkle tree, batches, checkpoints and anchors."""
