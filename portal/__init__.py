"""The public verification portal: verify documents and receipts, browse the log and its keys."""
