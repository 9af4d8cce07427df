"""Imports past decisions and their outcomes from a CSV file, through the ingestion services."""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework import serializers
from tqdm import tqdm

from audit.models import AISystem, Decision
from audit.serializers import DecisionSerializer, OutcomeSerializer
from audit.services.bulk import BulkContention, BulkItem, decisions_bulk_record
from audit.services.decisions import outcome_record

# Decision fields a column can fill; `inputs.<name>` and `protected_attributes.<name>` take any
# name. The outcome's fields are `actual.*` and `observed_at`.
SCALAR_FIELDS = {
    "client_decision_id",
    "model.name",
    "model.version",
    "occurred_at",
    "inputs_sha256",
    "output.label",
    "output.score",
    "output.value",
    "confidence",
    "threshold",
    "explanation.text",
    "explanation.ai_role",
    "explanation.main_factors",
    "solely_automated",
    "owner",
    "subject_ref",
}
OUTCOME_FIELDS = {"actual.label", "actual.score", "actual.value", "observed_at"}
OPEN_PREFIXES = ("inputs.", "protected_attributes.")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
INTEGER = re.compile(r"-?\d{1,15}")
FACTOR_SEPARATOR = ";"


def field_known(target: str) -> bool:
    if target in SCALAR_FIELDS or target in OUTCOME_FIELDS:
        return True
    prefix, _, name = target.partition(".")
    return f"{prefix}." in OPEN_PREFIXES and NAME.fullmatch(name) is not None


def _input_value(text: str) -> Any:
    """Inputs are typed by their look: whole numbers (within I-JSON's range) and decimals become
    numbers, anything else stays text."""
    if INTEGER.fullmatch(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if number == number and abs(number) != float("inf") else text


def _put(record: dict[str, Any], target: str, text: str) -> None:
    head, _, rest = target.partition(".")
    if head == "explanation" and rest == "main_factors":
        record.setdefault(head, {})[rest] = [
            part.strip() for part in text.split(FACTOR_SEPARATOR) if part.strip()
        ]
    elif head == "inputs" and rest:
        record.setdefault(head, {})[rest] = _input_value(text)
    elif rest:
        record.setdefault(head, {})[rest] = text
    else:
        record[head] = text


@dataclass
class Row:
    """A CSV record turned into a decision request and, if the file gives one, its outcome."""

    line: int
    decision: dict[str, Any]
    outcome: dict[str, Any] | None


@dataclass
class Tally:
    created: int = 0
    replayed: int = 0
    outcomes_created: int = 0
    outcomes_present: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)


def _messages(errors: Any, prefix: str = "") -> Iterator[str]:
    """`field: message` lines out of a DRF error tree, nested fields joined with dots."""
    if isinstance(errors, dict):
        for name, inner in errors.items():
            label = prefix if name == "non_field_errors" else f"{prefix}{name}"
            yield from _messages(inner, f"{label}." if label else "")
    elif isinstance(errors, list):
        for inner in errors:
            yield from _messages(inner, prefix)
    else:
        yield f"{prefix.rstrip('.') or 'record'}: {errors}"


class Command(BaseCommand):
    help = (
        "Import past decisions (and their outcomes) of an AI system from a CSV file with a header "
        "row. Columns named like a field (client_decision_id, model.name, output.label, "
        "protected_attributes.sex, actual.label, observed_at, ...) are taken as they are; --map "
        "column=field maps others. Each row goes through the API's validation and services; rows "
        "already imported (same client decision id and content) are skipped, so a rerun adds "
        "nothing. Bad rows are reported with their line numbers and the command exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="a CSV file, UTF-8, with a header row")
        parser.add_argument("--system", required=True, help="the AI system's slug")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="COLUMN=FIELD",
            help="take FIELD from COLUMN (repeatable); e.g. --map gender=protected_attributes.sex",
        )
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="the same VALUE for every row (repeatable); e.g. --set model.name=loan-scorer",
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="decisions per transaction (default 1000)"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        system = AISystem.objects.filter(slug=options["system"]).first()
        if system is None:
            raise CommandError(f"--system: there is no AI system {options['system']!r}")
        if not 1 <= options["batch_size"] <= 10_000:
            raise CommandError("--batch-size: must be between 1 and 10000")
        constants = self._pairs(options["set"], "--set", "FIELD=VALUE")
        for target in constants:
            if not field_known(target):
                raise CommandError(f"--set: unknown field {target!r}")
        path: Path = options["file"]
        try:
            handle = path.open(newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from exc
        with handle:
            total = max(sum(1 for _ in csv.reader(handle)) - 1, 0)
            handle.seek(0)
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise CommandError(f"{path}: the file is empty (a header row is needed)")
            columns = self._columns(header, self._pairs(options["map"], "--map", "COLUMN=FIELD"))
            tally = Tally()
            with tqdm(
                total=total,
                unit="row",
                desc=f"import {path.name}",
                disable=options["no_progress"],
                file=sys.stderr,
            ) as progress:
                batch: list[Row] = []
                for row in self._rows(reader, columns, constants, tally):
                    batch.append(row)
                    if len(batch) >= options["batch_size"]:
                        self._import(system, batch, tally)
                        progress.update(len(batch))
                        batch = []
                self._import(system, batch, tally)
                progress.update(total - progress.n)
        self._report(tally)

    @staticmethod
    def _pairs(values: list[str], option: str, shape: str) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for value in values:
            left, equals, right = value.partition("=")
            if not equals or not left:
                raise CommandError(f"{option}: {value!r} is not {shape}")
            pairs[left.strip()] = right.strip() if option == "--map" else right
        return pairs

    @staticmethod
    def _columns(header: list[str], mapping: dict[str, str]) -> list[tuple[int, str]]:
        """(column position, field) of every column that fills a field."""
        header = [name.strip() for name in header]
        missing = sorted(set(mapping) - set(header))
        if missing:
            raise CommandError(f"--map: no column {', '.join(map(repr, missing))} in the header")
        unknown = sorted(target for target in mapping.values() if not field_known(target))
        if unknown:
            raise CommandError(f"--map: unknown field {', '.join(map(repr, unknown))}")
        columns: list[tuple[int, str]] = []
        for position, name in enumerate(header):
            target = mapping.get(name, name if field_known(name) else None)
            if target is not None:
                columns.append((position, target))
        targets = [target for _, target in columns]
        twice = sorted({target for target in targets if targets.count(target) > 1})
        if twice:
            raise CommandError(f"more than one column fills {', '.join(map(repr, twice))}")
        return columns

    def _rows(
        self,
        reader: Any,
        columns: list[tuple[int, str]],
        constants: dict[str, str],
        tally: Tally,
    ) -> Iterator[Row]:
        """The file's records, validated as the API validates them; bad ones go to the tally."""
        previous_end = reader.line_num
        for cells in reader:
            line, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) < max((position for position, _ in columns), default=-1) + 1:
                tally.refused.append((line, f"record: {len(cells)} cells, fewer than the header"))
                continue
            decision: dict[str, Any] = {}
            outcome: dict[str, Any] = {}
            values = dict(constants)
            # An empty cell is a missing value (a --set value stands in), not an empty string.
            values.update(
                (target, cells[position].strip())
                for position, target in columns
                if cells[position].strip()
            )
            for target, text in values.items():
                if text:
                    _put(outcome if target in OUTCOME_FIELDS else decision, target, text)
            checked_decision = DecisionSerializer(data=decision)
            checked_outcome = OutcomeSerializer(data=outcome) if outcome else None
            problems = self._invalid(checked_decision)
            if checked_outcome is not None:
                problems += self._invalid(checked_outcome)
            if problems:
                tally.refused.extend((line, problem) for problem in problems)
                continue
            yield Row(
                line,
                checked_decision.validated_data,
                checked_outcome.validated_data if checked_outcome is not None else None,
            )

    @staticmethod
    def _invalid(checked: serializers.Serializer) -> list[str]:
        return [] if checked.is_valid() else list(_messages(checked.errors))

    def _import(self, system: AISystem, batch: list[Row], tally: Tally) -> None:
        if not batch:
            return
        items = [BulkItem(index=row.line, data=row.decision) for row in batch]
        try:
            results = decisions_bulk_record(system=system, items=items)
        except BulkContention as exc:
            raise CommandError(f"lines {batch[0].line}-{batch[-1].line}: {exc}") from exc
        recorded: dict[str, Row] = {}
        for row, result in zip(batch, results, strict=True):
            if result.status == 201:
                tally.created += 1
            elif result.status == 200:
                tally.replayed += 1
            else:
                error = result.error or {}
                problems = list(_messages(error.get("fields") or {})) or [error.get("message")]
                tally.refused.extend((row.line, str(problem)) for problem in problems)
                continue
            if row.outcome is not None:
                recorded[str(result.id)] = row
        self._outcomes(system, recorded, tally)

    @staticmethod
    def _outcomes(system: AISystem, recorded: dict[str, Row], tally: Tally) -> None:
        """Each row's outcome, unless the decision already has the same one (a rerun)."""
        if not recorded:
            return
        decisions = (
            Decision.objects.filter(system=system, entry__uuid__in=list(recorded))
            .select_related("entry", "system", "subject")
            .prefetch_related("outcomes")
        )
        for decision in decisions:
            outcome = recorded[str(decision.entry.uuid)].outcome
            assert outcome is not None
            known = any(
                stored.actual == dict(outcome["actual"])
                and stored.observed_at == outcome["observed_at"]
                for stored in decision.outcomes.all()
            )
            if known:
                tally.outcomes_present += 1
                continue
            outcome_record(
                decision=decision,
                actual=dict(outcome["actual"]),
                observed_at=outcome["observed_at"],
            )
            tally.outcomes_created += 1

    def _report(self, tally: Tally) -> None:
        for line, problem in sorted(tally.refused):
            self.stderr.write(f"line {line}: {problem}")
        self.stdout.write(
            f"{tally.created} decisions imported, {tally.replayed} already there; "
            f"{tally.outcomes_created} outcomes imported, {tally.outcomes_present} already there"
        )
        lines = sorted({line for line, _ in tally.refused})
        if lines:
            shown = ", ".join(map(str, lines[:20])) + (", ..." if len(lines) > 20 else "")
            raise CommandError(f"{len(lines)} rows refused (lines {shown})")
