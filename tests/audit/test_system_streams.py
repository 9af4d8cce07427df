"""Every entry the AI-decision domain appends belongs to an AI system, so it names that system's
stream: no call that appends an entry may leave its stream out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ("audit", "review", "bias")
APPENDERS = {"entry_append", "entry_build"}


def appending_calls() -> list[tuple[str, int, set[str]]]:
    calls = []
    for package in DOMAIN:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in APPENDERS:
                    keywords = {keyword.arg for keyword in node.keywords if keyword.arg}
                    calls.append((str(path.relative_to(ROOT)), node.lineno, keywords))
    return calls


def test_every_entry_the_domain_appends_names_its_system_s_stream():
    calls = appending_calls()
    # Decisions (one and bulk), model versions, outcomes, documents, review steps, policies,
    # erasures of subjects and of files, published bias audits.
    assert len(calls) >= 9, calls
    missing = [(path, line) for path, line, keywords in calls if "stream" not in keywords]
    assert not missing, missing
