"""The receipt corpus checked by veridict-verify: each receipt gets its verdict and failing step."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from veridict_verify.note import VerifierKey
from veridict_verify.receipt import receipt_verify

from tests.receipt_corpus import INFORMATIONAL_FIELDS, Case, Corpus, corpus_build

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "receipts.md"
COMMAND = Path(sys.executable).parent / "veridict-verify"


@pytest.fixture
def corpus(seal, tmp_path) -> Corpus:
    return corpus_build(seal=seal, folder=tmp_path / "other-tsa")


def python_verdict(corpus: Corpus, case: Case) -> tuple[str, str | None]:
    tsa_ca = corpus.tsa_ca_for(case)
    report = receipt_verify(
        json.loads(case.text),
        keys=[VerifierKey.parse(corpus.verifier_key)],
        tsa_ca_pem=tsa_ca.encode() if tsa_ca else None,
    ).as_dict()
    failed = [step["name"] for step in report["steps"] if step["status"] == "failed"]
    return report["verdict"], failed[0] if failed else None


def test_every_corpus_receipt_gets_its_verdict_and_failing_step(corpus) -> None:
    wrong = {
        case.name: (python_verdict(corpus, case), (case.verdict, case.failing_step))
        for case in corpus.cases
        if python_verdict(corpus, case) != (case.verdict, case.failing_step)
    }
    assert not wrong, wrong
    assert len(corpus.cases) > 80


def test_the_corpus_changes_every_layer_of_the_receipt(corpus) -> None:
    failing = {case.failing_step for case in corpus.cases if case.verdict == "failed"}
    steps = {"leaf", "set", "inclusion", "checkpoint_signature", "batch_header"}
    steps |= {"stream_inclusion"}
    assert steps | {"anchor[0]", "anchor[1]", "anchor[2]"} == failing
    verdicts = {case.verdict for case in corpus.cases}
    assert verdicts == {"verified", "failed", "pending"}


def test_changing_an_informational_field_leaves_the_receipt_verified(corpus) -> None:
    informational = [case for case in corpus.cases if case.informational]
    assert {case.informational for case in informational} == set(INFORMATIONAL_FIELDS)
    for case in informational:
        assert python_verdict(corpus, case) == ("verified", None), case.name


def test_the_docs_list_exactly_the_informational_fields() -> None:
    text = DOCS.read_text()
    section = text.split("## Fields no step binds (informational)")[1].split("\n## ")[0]
    listed = re.findall(r"^- `([^`]+)`(?:, `([^`]+)`)?", section, flags=re.MULTILINE)
    names = {name for pair in listed for name in pair if name}
    assert names == set(INFORMATIONAL_FIELDS)


def test_the_command_agrees_on_a_tampered_receipt_and_a_pending_one(corpus, tmp_path) -> None:
    for name, exit_code in (
        ("batch header sealed_at changed, header_hash recomputed", 1),
        ("pending: not sealed yet", 3),
        ("valid: batch 2 entry with two anchors", 0),
        ("stream.inclusion[0] changed", 1),
        ("pending: an entry of a stream not sealed yet", 3),
    ):
        case = corpus.by_name[name]
        path = tmp_path / "receipt.json"
        path.write_text(case.text)
        ca = tmp_path / "ca.pem"
        ca.write_text(corpus.tsa_ca_pem)
        result = subprocess.run(
            [str(COMMAND), str(path), "--key", corpus.verifier_key, "--tsa-ca", str(ca), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == exit_code, (name, result.stdout, result.stderr)
        report = json.loads(result.stdout)
        assert (report["verdict"], report["steps"][-1]["status"]) == (
            case.verdict,
            "failed" if case.failing_step else report["steps"][-1]["status"],
        )


def test_the_command_names_the_stream_inclusion_step_in_text_and_json(corpus, tmp_path) -> None:
    path = tmp_path / "receipt.json"
    path.write_text(corpus.by_name["valid: an entry of a stream"].text)
    command = [str(COMMAND), str(path), "--key", corpus.verifier_key]
    text = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "stream_inclusion" in text
    report = json.loads(
        subprocess.run(
            [*command, "--json"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    names = [step["name"] for step in report["steps"]]
    assert names[:6] == [
        "leaf",
        "set",
        "inclusion",
        "checkpoint_signature",
        "batch_header",
        "stream_inclusion",
    ]
    assert report["verdict"] == "verified"
