"""The oversight facts the AI Act asks about, from the entries of one AI system's log (docs/
evidence.md): every decision has an accountable owner; items sent to review were decided within
the deadline; contests were answered; decisions made solely by automated means are counted."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from veridict_verify import bias
from veridict_verify.formats import FormatError, parse_time
from veridict_verify.receipt import FAILED, OK, Step

FAILURES_SHOWN = 5


@dataclass(slots=True)
class DecisionFacts:
    """What the bias report and the oversight checks need of one decision."""

    entry_id: str
    index: int
    received_at: str
    record: bias.DecisionRecord  # from the leaf and its opened attributes; no outcome yet
    threshold: Any
    solely_automated: bool
    supersedes: str | None
    owner: str  # "opened", "committed" (not opened: erased), "system_default" or ""
    erased: bool
    review: Any  # the operator's statement, or None


@dataclass
class LedgerFacts:
    """What the entries that name a decision tell about it, in log order."""

    attributed: set[str] = field(default_factory=set)
    finals: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # The output of the latest final review, None for a confirmation (the decision's own).
    final_outputs: dict[str, Any] = field(default_factory=dict)
    contests: list[tuple[str, str, int]] = field(default_factory=list)
    actuals: dict[str, str] = field(default_factory=dict)  # the latest outcome's label


def review_final(body: Mapping[str, Any]) -> bool:
    """A review step that closes the review (docs/review.md): a confirmation, an approved
    override, or an override that needs no approval."""
    action = body.get("action")
    return action in ("confirm", "approve") or (
        action == "override" and body.get("needs_approval") is not True
    )


def _time(text: Any) -> datetime.datetime | None:
    try:
        return parse_time(text) if isinstance(text, str) else None
    except FormatError:
        return None


def oversight_check(
    *,
    decisions: Mapping[str, DecisionFacts],
    facts: LedgerFacts,
    last_seal: datetime.datetime | None,
) -> tuple[list[Step], dict[str, Any]]:
    """The oversight steps (`oversight[owner]`, `[review_deadline]`, `[contests]`,
    `[solely_automated]`) and their counts. `last_seal` is when the package's last batch was
    sealed: an item still open past its deadline by then is overdue."""
    steps: list[Step] = []
    counts: dict[str, Any] = {}

    # Every decision has an accountable owner.
    owners: dict[str, int] = defaultdict(int)
    without = []
    for decision in decisions.values():
        how = decision.owner or ("attributed" if decision.entry_id in facts.attributed else "")
        owners[how or "none"] += 1
        if not how:
            without.append(decision.entry_id)
    counts["owner"] = dict(owners)
    detail = (
        f"{len(decisions)} decisions: owner opened {owners['opened']}, committed but erased "
        f"{owners['committed']}, system default {owners['system_default']}, attributed later "
        f"{owners['attributed']}"
    )
    steps.append(
        Step(
            "oversight[owner]",
            FAILED,
            f"{len(without)} without an owner, e.g. {without[0]}; {detail}",
        )
        if without
        else Step("oversight[owner]", OK, detail)
    )

    # Items sent to review were decided within the deadline.
    review: dict[str, int] = defaultdict(int)
    problems = []
    for decision in decisions.values():
        statement = decision.review
        if statement is None:
            continue
        try:
            queued = parse_time(statement["queued_at"])
            due = parse_time(statement["due_at"])
        except (KeyError, TypeError, FormatError):
            review["unreadable"] += 1
            problems.append(f"{decision.entry_id}: the review statement has no queued_at/due_at")
            continue
        finals = [parse_time(at) for at in facts.finals.get(decision.entry_id, [])]
        decided = next((at for at in finals if at >= queued), None)
        if decided is not None:
            on_time = decided <= due
            review["on_time" if on_time else "late"] += 1
            if not on_time:
                problems.append(f"{decision.entry_id}: decided {decided - due} after its deadline")
        elif statement.get("closed_by") == "erasure" or decision.erased:
            review["closed_by_erasure"] += 1
        elif statement.get("closed_by") == "review":
            review["no_final_entry"] += 1
            problems.append(
                f"{decision.entry_id}: closed by review, but the ledger has no final review"
            )
        elif last_seal is not None and due < last_seal:
            review["overdue"] += 1
            problems.append(f"{decision.entry_id}: still open past its deadline")
        else:
            review["open_within_deadline"] += 1
    counts["review_deadline"] = dict(review)
    detail = (
        f"{sum(review.values())} sent to review: on time {review['on_time']}, late "
        f"{review['late']}, overdue {review['overdue']}, open within the deadline "
        f"{review['open_within_deadline']}, closed by erasure {review['closed_by_erasure']}; "
        "the deadlines (queued_at, due_at) rest on the operator's statement, the decision "
        "times on the ledger"
    )
    steps.append(
        Step(
            "oversight[review_deadline]",
            FAILED,
            f"{'; '.join(problems[:FAILURES_SHOWN])}; {detail}",
        )
        if problems
        else Step("oversight[review_deadline]", OK, detail)
    )

    # Contests answered: a final review of the same decision after the contest.
    contest: dict[str, int] = defaultdict(int)
    unanswered = []
    for decision_id, received_at, index in facts.contests:
        at = parse_time(received_at)
        if any(parse_time(done) > at for done in facts.finals.get(decision_id, [])):
            contest["answered"] += 1
            continue
        contested = decisions.get(decision_id)
        statement = contested.review if contested is not None else None
        due_at = statement.get("due_at") if isinstance(statement, dict) else None
        if contested is not None and contested.erased:
            contest["closed_by_erasure"] += 1
        elif last_seal is not None and (_time(due_at) or last_seal) > last_seal:
            contest["awaiting_within_deadline"] += 1
        else:
            contest["unanswered"] += 1
            unanswered.append(f"entry {index} (decision {decision_id})")
    counts["contests"] = dict(contest)
    detail = (
        f"{len(facts.contests)} contests: answered {contest['answered']}, awaiting within the "
        f"deadline {contest['awaiting_within_deadline']}, closed by erasure "
        f"{contest['closed_by_erasure']}, unanswered {contest['unanswered']}"
    )
    steps.append(
        Step(
            "oversight[contests]",
            FAILED,
            f"unanswered: {', '.join(unanswered[:FAILURES_SHOWN])}; {detail}",
        )
        if unanswered
        else Step("oversight[contests]", OK, detail)
    )

    automated = sum(decision.solely_automated for decision in decisions.values())
    counts["solely_automated"] = {"decisions": len(decisions), "solely_automated": automated}
    steps.append(
        Step(
            "oversight[solely_automated]",
            OK,
            f"{automated} of {len(decisions)} decisions were made solely by automated means",
        )
    )
    return steps, counts
