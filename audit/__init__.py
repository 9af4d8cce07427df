"""The AI-decision domain built on the log: systems, decisions, documents, reviews, bias audits."""
