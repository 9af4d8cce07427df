"""veridict-verify: checks Veridict receipts offline, with no server and no Django."""
