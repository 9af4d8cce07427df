"""veridict-audit over evidence packages of a real sealed log: an untouched package passes; a
package with a decision left out, added, reordered, cut short, a tampered opening or a bad
checkpoint signature fails at the step that names it."""

# ruff: noqa: F811 (fixtures taking the imported fixtures as arguments)

from __future__ import annotations

import base64
import copy
import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from veridict_verify.evidence import PackageUnreadable, package_audit
from veridict_verify.note import VerifierKey, note_sign, note_split

from audit.models import Decision
from audit.services.decisions import outcome_record
from audit.services.subjects import subject_erase
from bias.selectors import bias_report_build
from review.models import ReviewItem
from review.services import contest_record, review_claim, review_confirm
from tests.audit.conftest import AISystemFactory
from tests.evidence_package import evidence_lines, evidence_package_write
from tests.review.conftest import (  # noqa: F401
    ai_system,
    alice,
    decision_request,
    queued,
    record,
    settings_of,
)
from timestamping import keys

pytestmark = pytest.mark.django_db

COMMAND = Path(sys.executable).parent / "veridict-audit"
LEDGER_STEPS = [
    "header",
    "checkpoint_signature",
    "batch_header",
    "anchor[0]",
    "leaf",
    "completeness",
    "openings",
]
OVERSIGHT_STEPS = [
    "oversight[owner]",
    "oversight[review_deadline]",
    "oversight[contests]",
    "oversight[solely_automated]",
]
PEOPLE = [("female", "approve"), ("male", "approve"), ("female", "deny"), ("male", "approve")]


@pytest.fixture
def sealed_system(ai_system, record, queued, alice, seal):
    """A system with decisions of two groups over three batches: outcomes, a confirmed review
    and an answered contest; and another system's decision sealed among them."""
    decisions = []
    for number, (sex, label) in enumerate(PEOPLE):
        decisions.append(
            record(
                output={"label": label, "score": 0.2 + number / 10},
                protected_attributes={"sex": sex, "age_band": "30-39"},
            )
        )
    record(system=AISystemFactory(), client_decision_id="elsewhere-1")
    seal()
    outcome_record(
        decision=decisions[0], actual={"label": "repaid"}, observed_at=decisions[0].occurred_at
    )
    item = queued(protected_attributes={"sex": "female"}, output={"label": "deny"})
    review_claim(item=item, reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="income verified by hand")
    seal()
    contest_record(decision=decisions[1], statement="my income was misread")
    contested = ReviewItem.objects.get(decision=decisions[1])
    review_claim(item=contested, reviewer=alice)
    review_confirm(item=contested, reviewer=alice, rationale="checked again: stands")
    seal()
    return ai_system


@pytest.fixture
def pinned(ledger_keys) -> dict[str, Any]:
    return {
        "keys": [keys.verifier_key()],
        "tsa_ca_pem": ledger_keys["TSA_CA_CERT_FILE"].read_bytes(),
    }


def audit(path: Path, pinned: dict[str, Any], **options: Any):
    result = package_audit(path, **pinned, **options)
    return result, {step.name: step for step in result.report.steps}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(COMMAND), *args], capture_output=True, text=True, timeout=120)


def cli_args(path: Path, ledger_keys) -> list[str]:
    return [
        str(path),
        "--key",
        str(keys.verifier_key()),
        "--tsa-ca",
        str(ledger_keys["TSA_CA_CERT_FILE"]),
    ]


def first_failed(result) -> str:
    failed = result.report.failed
    return failed.name if failed else ""


def test_an_untouched_package_passes_every_step_in_a_subprocess(
    sealed_system, tmp_path, ledger_keys
):
    path = tmp_path / "pkg.ndjson.gz"
    evidence_package_write(path, system=sealed_system)
    finished = run(*cli_args(path, ledger_keys))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    steps = [line for line in finished.stdout.splitlines() if line[:1] != " "][:-1]
    names = [line.split()[1] for line in steps]
    assert names == [*LEDGER_STEPS, "bias", *OVERSIGHT_STEPS]
    assert finished.stdout.splitlines()[-1] == "VERIFIED"


def test_a_package_written_by_evidence_export_passes_every_step(
    sealed_system, tmp_path, ledger_keys
):
    """The exporter and the checker, each written from docs/evidence.md, agree end to end."""
    from django.core.management import call_command

    path = tmp_path / "exported.ndjson.gz"
    call_command("evidence_export", str(path), "--system", sealed_system.slug)
    finished = run(*cli_args(path, ledger_keys))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert finished.stdout.splitlines()[-1] == "VERIFIED"


def test_the_checks_hold_for_a_range_that_starts_after_a_batch(sealed_system, tmp_path, pinned):
    path = tmp_path / "pkg.ndjson.gz"
    lines = evidence_package_write(path, system=sealed_system, after_batch=1)
    assert lines[0]["start"]["size"] > 0 and lines[0]["start"]["compact_range"]
    result, steps = audit(path, pinned)
    assert result.report.ok, result.report.steps
    assert result.facts["package"]["start"]["size"] == lines[0]["start"]["size"]


def test_json_output_has_the_verdict_steps_and_facts(sealed_system, tmp_path, ledger_keys):
    path = tmp_path / "pkg.ndjson.gz"
    evidence_package_write(path, system=sealed_system)
    finished = run(*cli_args(path, ledger_keys), "--json")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    output = json.loads(finished.stdout)
    assert output["verdict"] == "verified"
    assert [step["name"] for step in output["steps"]] == [*LEDGER_STEPS, "bias", *OVERSIGHT_STEPS]
    assert set(output["steps"][0]) == {"name", "status", "detail"}
    package = output["package"]
    assert (package["decisions"], package["erased"]) == (5, 0)
    assert package["system"]["slug"] == sealed_system.slug
    assert output["bias"]["report"]["total"] == 5
    assert output["oversight"]["contests"] == {"answered": 1}
    assert output["oversight"]["review_deadline"]["on_time"] == 2


def edited(sealed_system, tmp_path, change) -> Path:
    lines = list(evidence_lines(system=sealed_system))
    change(lines)
    path = tmp_path / "edited.ndjson.gz"
    evidence_package_write(path, lines=lines)
    return path


def decision_positions(lines) -> list[int]:
    return [
        position
        for position, line in enumerate(lines)
        if line["type"] == "entry"
        and b'"kind":"decision"' in base64.b64decode(line["canonical_b64"])
    ]


def test_leaving_out_one_decision_fails_completeness(sealed_system, tmp_path, pinned):
    def leave_out(lines):
        position = decision_positions(lines)[1]
        del lines[position]
        for line in lines[position:]:
            line["index"] -= 1  # hide the gap in the indices too

    result, steps = audit(edited(sealed_system, tmp_path, leave_out), pinned)
    assert first_failed(result) == "completeness"
    assert "do not give the system log's root" in steps["completeness"].detail
    assert steps["bias"].status == "skipped"


def test_adding_a_decision_of_another_system_fails_at_leaf_and_completeness(
    sealed_system, tmp_path, pinned, record, seal
):
    other = AISystemFactory()
    record(system=other, client_decision_id="foreign-1")
    seal()
    foreign_line = next(
        line
        for line in evidence_lines(system=other)
        if line["type"] == "entry" and line["openings"]
    )

    def add(lines):
        position = decision_positions(lines)[2]
        lines.insert(
            position,
            {**foreign_line, "index": lines[position]["index"], "batch": lines[position]["batch"]},
        )
        for line in lines[position + 1 :]:
            line["index"] += 1

    result, steps = audit(edited(sealed_system, tmp_path, add), pinned)
    assert steps["leaf"].status == "failed"
    assert "an entry of another system" in steps["leaf"].detail
    assert steps["completeness"].status == "failed"


def test_reordering_two_entries_fails_completeness(sealed_system, tmp_path, pinned):
    def swap(lines):
        first, second = decision_positions(lines)[:2]
        lines[first]["canonical_b64"], lines[second]["canonical_b64"] = (
            lines[second]["canonical_b64"],
            lines[first]["canonical_b64"],
        )
        lines[first]["openings"], lines[second]["openings"] = (
            lines[second]["openings"],
            lines[first]["openings"],
        )

    result, steps = audit(edited(sealed_system, tmp_path, swap), pinned)
    assert first_failed(result) == "completeness"


def test_a_package_cut_short_fails_completeness(sealed_system, tmp_path, pinned):
    path = tmp_path / "pkg.ndjson.gz"
    lines = evidence_package_write(path, system=sealed_system)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for line in lines[:-3]:  # the last two entries and the end line are gone
            handle.write(json.dumps(line) + "\n")
    result, steps = audit(path, pinned)
    assert first_failed(result) == "completeness"
    assert "cut short" in steps["completeness"].detail


def test_an_end_line_that_shortens_the_range_fails_completeness(sealed_system, tmp_path, pinned):
    def shorten(lines):
        del lines[-2:]  # the last entries, with the end line rewritten to fit them

    result, steps = audit(edited(sealed_system, tmp_path, shorten), pinned)
    assert first_failed(result) == "completeness"
    assert "the range" in steps["completeness"].detail


def test_a_tampered_opening_fails_openings(sealed_system, tmp_path, pinned):
    def tamper(lines):
        line = lines[decision_positions(lines)[0]]
        line["openings"]["protected_attributes"]["value"] = {"sex": "male", "age_band": "30-39"}

    result, steps = audit(edited(sealed_system, tmp_path, tamper), pinned)
    assert first_failed(result) == "openings"
    assert "protected_attributes" in steps["openings"].detail


def test_a_decision_whose_attributes_are_not_opened_fails_openings(sealed_system, tmp_path, pinned):
    def withhold(lines):
        del lines[decision_positions(lines)[0]]["openings"]["protected_attributes"]

    result, steps = audit(edited(sealed_system, tmp_path, withhold), pinned)
    assert first_failed(result) == "openings"
    assert "not opened" in steps["openings"].detail


def test_a_checkpoint_signed_by_another_key_fails_checkpoint_signature(
    sealed_system, tmp_path, pinned
):
    forger = Ed25519PrivateKey.generate()

    def forge(lines):
        batch = next(line for line in lines if line["type"] == "batch")
        text, _ = note_split(batch["checkpoint"])
        name = str(keys.verifier_key()).split("+")[0]
        forged = note_sign(text, name, forger)
        # the forger claims the pinned key's id: the signature must then verify, and does not
        pinned_id = keys.verifier_key().key_id
        forged_id = VerifierKey.from_public_key(name, forger.public_key()).key_id
        signature = forged.rsplit(" ", 1)[1].strip()
        raw = base64.b64decode(signature)
        assert raw[:4] == forged_id
        batch["checkpoint"] = forged.replace(
            signature, base64.b64encode(pinned_id + raw[4:]).decode()
        )

    result, steps = audit(edited(sealed_system, tmp_path, forge), pinned)
    assert first_failed(result) == "checkpoint_signature"
    assert "does not verify" in steps["checkpoint_signature"].detail


def server_report(system) -> dict[str, Any]:
    """The report as GET /api/v1/bias/report serialises it."""
    return json.loads(json.dumps(bias_report_build(system=system, attributes=["sex"])))


def test_compare_with_the_servers_report_passes_when_equal(sealed_system, tmp_path, ledger_keys):
    path = tmp_path / "pkg.ndjson.gz"
    evidence_package_write(path, system=sealed_system)
    report = tmp_path / "report.json"
    report.write_text(json.dumps(server_report(sealed_system)))
    finished = run(*cli_args(path, ledger_keys), "--compare", str(report), "--json")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    output = json.loads(finished.stdout)
    assert output["bias"]["differences"] == []
    assert "equal to the compared report" in output["steps"][7]["detail"]


def test_compare_names_every_figure_that_differs(sealed_system, tmp_path, pinned):
    path = tmp_path / "pkg.ndjson.gz"
    evidence_package_write(path, system=sealed_system)
    theirs = copy.deepcopy(server_report(sealed_system))
    female = next(group for group in theirs["groups"] if group["key"] == "female")
    female["count"] += 1
    theirs["total"] += 1
    result, steps = audit(path, pinned, compare=theirs)
    assert first_failed(result) == "bias"
    paths = {difference["path"] for difference in result.facts["bias"]["differences"]}
    assert {"total", "groups[female].count"} <= paths
    assert "groups[female].count: ours 3, theirs 4" in steps["bias"].detail


def test_the_html_report_is_written_and_self_contained(sealed_system, tmp_path, ledger_keys):
    path = tmp_path / "pkg.ndjson.gz"
    evidence_package_write(path, system=sealed_system)
    html = tmp_path / "report.html"
    finished = run(*cli_args(path, ledger_keys), "--html", str(html))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page and "<img" not in page
    for text in ("completeness", "oversight[contests]", sealed_system.name, "four-fifths"):
        assert text in page


def test_an_unreadable_package_exits_two(tmp_path, ledger_keys):
    path = tmp_path / "not-a-package.ndjson.gz"
    path.write_bytes(b"plain text, not gzip")
    finished = run(*cli_args(path, ledger_keys))
    assert finished.returncode == 2
    assert "unreadable package" in finished.stderr
    with pytest.raises(PackageUnreadable):
        package_audit(path, keys=[keys.verifier_key()])


def test_a_review_decided_after_its_stated_deadline_fails_the_deadline_check(
    sealed_system, tmp_path, pinned
):
    def earlier_deadline(lines):
        line = next(line for line in lines if line["type"] == "entry" and line.get("review"))
        line["review"]["due_at"] = line["review"]["queued_at"]

    result, steps = audit(edited(sealed_system, tmp_path, earlier_deadline), pinned)
    assert first_failed(result) == "oversight[review_deadline]"
    assert "after its deadline" in steps["oversight[review_deadline]"].detail
    assert "operator's statement" in steps["oversight[review_deadline]"].detail


def test_a_contest_left_unanswered_past_its_deadline_fails_the_contest_check(
    sealed_system, tmp_path, pinned, record, seal
):
    contested = record(protected_attributes={"sex": "male"})
    contest_record(decision=contested, statement="nobody looked at my file")
    seal()
    lines = list(evidence_lines(system=sealed_system))
    path = tmp_path / "pkg.ndjson.gz"
    evidence_package_write(path, lines=lines)
    result, steps = audit(path, pinned)
    assert result.report.ok, steps
    assert result.facts["oversight"]["contests"] == {"answered": 1, "awaiting_within_deadline": 1}

    def past_deadline(lines):
        line = next(
            line
            for line in lines
            if line.get("review", {})
            and line["review"]["reason"] == "contest"
            and not line["review"]["closed_at"]
        )
        line["review"]["due_at"] = line["review"]["queued_at"]

    result, steps = audit(edited(sealed_system, tmp_path, past_deadline), pinned)
    assert steps["oversight[contests]"].status == "failed"
    assert "unanswered: entry" in steps["oversight[contests]"].detail
    assert "still open past its deadline" in steps["oversight[review_deadline]"].detail


def test_erased_decisions_are_counted_and_left_out_of_the_comparison(
    sealed_system, tmp_path, pinned, record, seal
):
    erased = record(subject_ref="applicant-gone", protected_attributes={"sex": "female"})
    seal()
    subject_erase(subject=erased.subject, reason="request")
    seal()
    path = tmp_path / "pkg.ndjson.gz"
    lines = evidence_package_write(path, system=sealed_system)
    assert lines[-1]["erased"] == 1
    result, steps = audit(path, pinned, compare=server_report(sealed_system))
    assert result.facts["package"]["erased"] == 1
    assert result.facts["bias"]["excluded_erased"] == 1
    assert "owner opened 5, committed but erased 1" in steps["oversight[owner]"].detail
    assert first_failed(result) == "bias"
    assert "1 decisions of erased subjects are in its counts" in steps["bias"].detail


def test_a_leaf_whose_bytes_are_not_canonical_fails_at_leaf(sealed_system, tmp_path, pinned):
    def respaced(lines):
        line = lines[decision_positions(lines)[0]]
        leaf = json.loads(base64.b64decode(line["canonical_b64"]))
        line["canonical_b64"] = base64.b64encode(json.dumps(leaf).encode()).decode()

    result, steps = audit(edited(sealed_system, tmp_path, respaced), pinned)
    assert first_failed(result) == "leaf"
    assert "not its RFC 8785 canonical form" in steps["leaf"].detail


def test_the_checker_imports_nothing_of_the_server():
    import ast

    import veridict_verify

    folder = Path(veridict_verify.__file__).parent
    allowed = {"veridict_verify", "rfc8785", "cryptography", "rfc3161_client", "asn1crypto"}
    for name in ("evidence.py", "oversight.py", "audit_cli.py", "audit_html.py", "canonical.py"):
        for node in ast.walk(ast.parse((folder / name).read_text())):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for module in modules:
                root = module.split(".")[0]
                assert root in sys.stdlib_module_names or root in allowed, (name, module)


def test_a_batch_left_out_breaks_the_chain_of_sizes_at_batch_header(
    sealed_system, tmp_path, pinned
):
    def leave_out_batch(lines):
        second = [position for position, line in enumerate(lines) if line["type"] == "batch"][1]
        del lines[second]

    result, steps = audit(edited(sealed_system, tmp_path, leave_out_batch), pinned)
    assert first_failed(result) == "batch_header"
    assert "a batch is missing" in steps["batch_header"].detail


def test_a_compact_range_that_is_not_hashes_fails_at_header(sealed_system, tmp_path, pinned):
    def bad_border(lines):
        lines[0]["start"]["compact_range"] = ["ab"] * len(lines[0]["start"]["compact_range"])

    path = tmp_path / "pkg.ndjson.gz"
    lines = list(evidence_lines(system=sealed_system, after_batch=1))
    bad_border(lines)
    evidence_package_write(path, lines=lines)
    result, steps = audit(path, pinned)
    assert first_failed(result) == "header"
    assert "64-digit hex hash" in steps["header"].detail


def test_compare_accepts_a_published_audits_canonical_report_bytes(sealed_system, tmp_path, pinned):
    from veridict_verify import canonical

    path = tmp_path / "pkg.ndjson.gz"
    evidence_package_write(path, system=sealed_system)
    published = json.loads(canonical.dumps(server_report(sealed_system)))
    assert 1 in [g["rates"]["selection_rate"]["value"] for g in published["groups"]]
    result, steps = audit(path, pinned, compare=published)
    assert result.report.ok, steps["bias"]
    assert result.facts["bias"]["differences"] == []


def test_decisions_recorded_through_the_api_are_exported_and_audited_against_the_apis_report(
    ai_system, decision_request, alice, settings_of, seal, tmp_path, ledger_keys
):
    """The auditor's path end to end: decisions and outcomes through the API, a human review,
    sealing, the package and the bias report fetched with the system's key, then veridict-audit
    in its own process with pinned keys: every step passes and its report equals the API's."""
    from rest_framework.test import APIClient

    from audit.services.systems import api_key_create
    from review.services import review_item_open

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_create(system=ai_system, name='e2e')}")
    ids = []
    for number, (sex, label) in enumerate(PEOPLE * 2):
        response = client.post(
            "/api/v1/decisions",
            decision_request(
                client_decision_id=f"e2e-{number}",
                subject_ref=f"applicant-{number}",
                output={"label": label, "score": 0.2 + number / 40},
                protected_attributes={"sex": sex},
            ),
            format="json",
        )
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    for entry_id in ids[:4]:
        response = client.post(
            f"/api/v1/decisions/{entry_id}/outcome",
            {"actual": {"label": "repaid"}, "observed_at": "2026-11-30T09:00:00Z"},
            format="json",
        )
        assert response.status_code == 201, response.content
    seal()
    reviewed = Decision.objects.get(entry__uuid=ids[1])
    item = review_item_open(decision=reviewed, by=None)
    review_claim(item=item, reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="checked by hand")
    seal()

    package = tmp_path / "api.ndjson.gz"
    response = client.get(f"/api/v1/systems/{ai_system.slug}/evidence")
    assert response.status_code == 200
    package.write_bytes(b"".join(response.streaming_content))
    report = tmp_path / "report.json"
    response = client.get(f"/api/v1/bias/report?system={ai_system.slug}&attributes=sex")
    assert response.status_code == 200, response.content
    report.write_bytes(response.content)

    finished = run(*cli_args(package, ledger_keys), "--compare", str(report), "--json")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    output = json.loads(finished.stdout)
    assert output["bias"]["differences"] == []
    assert all(step["status"] == "ok" for step in output["steps"]), output["steps"]
