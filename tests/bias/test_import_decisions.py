"""`manage.py import_decisions`: past decisions and outcomes from CSV, through the services."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import Decision, Outcome
from audit.selectors import decisions_by_client_id
from audit.services.subjects import decision_client_id, decision_personal_data
from tests.audit.conftest import AISystemFactory
from timestamping.models import Entry

pytestmark = pytest.mark.django_db

HEADER = (
    "client_decision_id,model.name,model.version,occurred_at,applicant,income,decision,score,"
    "gender,race,actual.label,observed_at\n"
)
GOOD = (
    "loan-1,loan-scorer,1.0,2026-03-01T10:00:00Z,app-1,42000,approve,0.81,female,Asian,"
    "repaid,2026-09-01T00:00:00Z\n"
    "loan-2,loan-scorer,1.0,2026-03-02T10:00:00Z,app-2,31000,deny,0.22,male,White,,\n"
    "loan-3,loan-scorer,1.0,2026-03-03T10:00:00Z,app-3,58000,approve,0.77,,White,"
    "defaulted,2026-10-01T00:00:00Z\n"
)
BAD = (
    # line 5: not a date; line 6: the score is not a number; line 7: an outcome without its time
    "loan-4,loan-scorer,1.0,yesterday,app-4,1,deny,0.1,male,White,,\n"
    "loan-5,loan-scorer,1.0,2026-03-05T10:00:00Z,app-5,1,deny,high,male,White,,\n"
    "loan-6,loan-scorer,1.0,2026-03-06T10:00:00Z,app-6,1,deny,0.1,male,White,repaid,\n"
)
MAP = [
    "--map",
    "applicant=subject_ref",
    "--map",
    "income=inputs.income",
    "--map",
    "decision=output.label",
    "--map",
    "score=output.score",
    "--map",
    "gender=protected_attributes.sex",
    "--map",
    "race=protected_attributes.race",
    "--set",
    "solely_automated=false",
]


def run(path: Path, slug: str, *extra: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "import_decisions", str(path), "--system", slug, "--no-progress", *MAP, *extra,
        stdout=out, stderr=err,
    )  # fmt: skip
    return out.getvalue(), err.getvalue()


@pytest.fixture
def system():
    return AISystemFactory(slug="past-loans")


def test_good_rows_become_decisions_with_their_outcomes(system, tmp_path):
    path = tmp_path / "past.csv"
    path.write_text(HEADER + GOOD)
    out, _ = run(path, system.slug)
    assert "3 decisions imported, 0 already there; 2 outcomes imported" in out
    decisions = {decision_client_id(d): d for d in Decision.objects.filter(system=system)}
    assert sorted(decisions) == ["loan-1", "loan-2", "loan-3"]
    first = decisions["loan-1"]
    assert first.output == {"label": "approve", "score": 0.81}
    personal = decision_personal_data(first)["fields"]
    assert personal["inputs"] == {"income": 42000}
    assert personal["protected_attributes"] == {"sex": "female", "race": "Asian"}
    # An empty cell is a missing attribute, not an empty one.
    assert decision_personal_data(decisions["loan-3"])["fields"]["protected_attributes"] == {
        "race": "White"
    }
    outcomes = {decision_client_id(o.decision): o.actual for o in Outcome.objects.all()}
    assert outcomes == {"loan-1": {"label": "repaid"}, "loan-3": {"label": "defaulted"}}
    assert Entry.objects.filter(kind="decision").count() == 3
    assert Entry.objects.filter(kind="outcome").count() == 2


def test_bad_rows_are_reported_by_line_and_the_good_ones_still_imported(system, tmp_path):
    path = tmp_path / "past.csv"
    path.write_text(HEADER + GOOD + BAD)
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"3 rows refused \(lines 5, 6, 7\)"):
        call_command(
            "import_decisions", str(path), "--system", system.slug, "--no-progress", *MAP,
            stdout=io.StringIO(), stderr=err,
        )  # fmt: skip
    report = err.getvalue()
    assert "line 5: occurred_at:" in report
    assert "line 6: output.score:" in report
    assert "line 7: observed_at:" in report
    assert Decision.objects.filter(system=system).count() == 3
    assert Outcome.objects.count() == 2


def test_a_rerun_adds_nothing(system, tmp_path):
    path = tmp_path / "past.csv"
    path.write_text(HEADER + GOOD)
    run(path, system.slug, "--batch-size", "2")
    entries = Entry.objects.count()
    out, _ = run(path, system.slug)
    assert "0 decisions imported, 3 already there; 0 outcomes imported, 2 already there" in out
    assert Entry.objects.count() == entries
    assert Decision.objects.count() == 3 and Outcome.objects.count() == 2


def test_the_same_client_id_with_other_content_is_refused_on_its_line(system, tmp_path):
    path = tmp_path / "past.csv"
    path.write_text(HEADER + GOOD)
    run(path, system.slug)
    changed = tmp_path / "changed.csv"
    changed.write_text(HEADER + GOOD.replace("approve,0.81", "deny,0.41"))
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"1 rows refused \(lines 2\)"):
        call_command(
            "import_decisions", str(changed), "--system", system.slug, "--no-progress", *MAP,
            stdout=io.StringIO(), stderr=err,
        )  # fmt: skip
    assert "line 2: client_decision_id: client_decision_id was already used" in err.getvalue()
    assert decisions_by_client_id(system=system, client_ids=["loan-1"]).get().output == {
        "label": "approve",
        "score": 0.81,
    }


def test_line_numbers_count_lines_of_the_file_not_records(system, tmp_path):
    path = tmp_path / "past.csv"
    quoted = GOOD.replace("app-2,", '"app\n2",', 1)  # a record over two lines
    path.write_text(HEADER + quoted + BAD.splitlines(keepends=True)[0])
    with pytest.raises(CommandError, match=r"lines 6\)"):
        run(path, system.slug)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--map", "nope=subject_ref"], "no column 'nope'"),
        (["--map", "gender=protected_attributes"], "unknown field 'protected_attributes'"),
        (["--set", "colour=red"], "unknown field 'colour'"),
        (["--map", "score"], "is not COLUMN=FIELD"),
    ],
)
def test_a_wrong_mapping_is_refused_before_anything_is_imported(system, tmp_path, extra, message):
    path = tmp_path / "past.csv"
    path.write_text(HEADER + GOOD)
    with pytest.raises(CommandError, match=message):
        run(path, system.slug, *extra)
    assert not Decision.objects.exists()


def test_an_unknown_system_is_named(tmp_path, db):
    path = tmp_path / "past.csv"
    path.write_text(HEADER + GOOD)
    with pytest.raises(CommandError, match="no AI system 'ghost'"):
        run(path, "ghost")
