"""Writes of the AI-decision domain: systems, decisions, subjects, documents."""
