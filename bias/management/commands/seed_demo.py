"""Fills the public AI system "demo-loans" with synthetic loan decisions carrying a known bias."""

from __future__ import annotations

import hashlib
import math
import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from audit import vault
from audit.models import AISystem, Decision
from audit.selectors import decisions_by_client_id
from audit.serializers import DecisionSerializer
from audit.services.bulk import BulkItem, decisions_bulk_record
from audit.services.decisions import model_version_register, outcome_record
from audit.services.systems import ai_system_create
from review.services import (
    review_claim,
    review_confirm,
    review_item_open,
    review_override,
    review_settings_get_or_create,
)

SLUG = "demo-loans"
MODEL = "loan-scorer"
# The days the decisions span, ending the day the system was created; version 2.0 replaced 1.0
# after SWITCH_DAY of them.
DAYS = 182
SWITCH_DAY = 100
THRESHOLD = 0.5
# Log-odds added to a woman's score: 1.0 selects women at about 0.71 times the rate of men, below
# the four-fifths threshold; 2.0 mostly repairs it (about 0.95). Black applicants get a smaller
# penalty under 1.0 (about 0.85), so an intersection shows more than either attribute alone.
SEX_PENALTY = {"1.0": -0.65, "2.0": -0.12}
RACE_PENALTY = {"1.0": {"Black or African American": -0.3}, "2.0": {}}
SEXES = (("female", 0.485), ("male", 0.495), (None, 0.02))
# EEO-1 categories, as NYC LL144 audits use; two fall under LL144's 2 % rule.
RACES = (
    ("White", 0.57),
    ("Hispanic or Latino", 0.16),
    ("Black or African American", 0.14),
    ("Asian", 0.08),
    ("Two or more races", 0.03),
    ("Native Hawaiian or Pacific Islander", 0.01),
    (None, 0.01),
)
AGE_BANDS = (("18-24", 0.12), ("25-39", 0.38), ("40-54", 0.32), ("55+", 0.18))
CHUNK = 1000
# The demo's human review: denials of 1.0 scoring at least this much, up to REVIEWS of them.
REVIEWER = "demo-reviewer"
REVIEW_FROM_SCORE = 0.4
REVIEWS = 120


def _pick(rng: random.Random, choices: tuple[tuple[str | None, float], ...]) -> str | None:
    values, weights = zip(*choices, strict=True)
    return rng.choices(values, weights)[0]


def _sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))


def _van_der_corput(index: int) -> float:
    """The index-th point (from 1) of the base-2 van der Corput sequence, in (0, 1): each
    prefix of the sequence spreads evenly over the interval."""
    point, scale = 0.0, 0.5
    while index:
        index, bit = divmod(index, 2)
        point += bit * scale
        scale /= 2
    return point


@dataclass
class DemoDecision:
    request: dict[str, Any]
    outcome: dict[str, Any] | None


def demo_decisions(*, count: int, seed: int, end: datetime) -> list[DemoDecision]:
    """The same decisions for the same arguments: a rerun finds them all recorded already.

    Creditworthiness is drawn independently of sex and race, and repayment follows it alone, so
    every difference in selection between groups is the model's doing.
    """
    rng = random.Random(seed)  # noqa: S311 -- synthetic data, reproducible on purpose
    start = end - timedelta(days=DAYS)
    decisions: list[DemoDecision] = []
    drawn: dict[tuple[str, str | None], int] = {}
    for number in range(1, count + 1):
        occurred_at = start + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        version = "1.0" if occurred_at < start + timedelta(days=SWITCH_DAY) else "2.0"
        sex, race, age_band = _pick(rng, SEXES), _pick(rng, RACES), _pick(rng, AGE_BANDS)
        # Creditworthiness by quantiles spread evenly within each (version, sex), so that even
        # a few hundred decisions show the built-in disparity rather than sampling noise.
        drawn[(version, sex)] = drawn.get((version, sex), 0) + 1
        worth = NormalDist().inv_cdf(_van_der_corput(drawn[(version, sex)]))
        log_odds = 1.6 * worth + 0.25
        log_odds += SEX_PENALTY[version] if sex == "female" else 0.0
        log_odds += RACE_PENALTY[version].get(race or "", 0.0)
        score = round(_sigmoid(log_odds), 4)
        income = round(max(9_000, rng.lognormvariate(10.6, 0.45)), -2)
        attributes = {"sex": sex, "race": race, "age_band": age_band}
        request = {
            "client_decision_id": f"demo-loan-{number:06d}",
            "model": {"name": MODEL, "version": version},
            "occurred_at": occurred_at.isoformat(),
            "inputs": {
                "income": int(income),
                "amount": int(round(rng.uniform(2_000, 40_000), -2)),
                "term_months": rng.choice((12, 24, 36, 48, 60)),
            },
            "output": {"label": "approve" if score >= THRESHOLD else "deny", "score": score},
            "confidence": round(abs(score - THRESHOLD) * 2, 4),
            "threshold": THRESHOLD,
            "solely_automated": rng.random() < 0.6,
            "subject_ref": f"demo-applicant-{number:06d}",
            "protected_attributes": {k: v for k, v in attributes.items() if v is not None},
        }
        repaid = rng.random() < _sigmoid(1.4 * worth + 0.9)
        # Known about a month later: the last month's decisions have no outcome yet.
        observed_at = occurred_at + timedelta(days=rng.uniform(14, 45))
        outcome = None
        if observed_at < end:
            outcome = {
                "actual": {"label": "repaid" if repaid else "defaulted"},
                "observed_at": observed_at,
            }
        decisions.append(DemoDecision(request, outcome))
    return decisions


class Command(BaseCommand):
    help = (
        f'Fill the public AI system "{SLUG}" with synthetic loan decisions (two model versions; '
        "women selected at about 0.7 times the rate of men under 1.0, about 0.95 under 2.0), "
        "most of their outcomes and a few human reviews, through the services. Running it again "
        "adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--decisions", type=int, default=5000, help="how many (default 5000)")
        parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, decisions: int, seed: int, no_progress: bool, **options: Any):  # type: ignore[no-untyped-def]
        if not 1 <= decisions <= 1_000_000:
            raise CommandError("--decisions: must be between 1 and 1000000")
        system = AISystem.objects.filter(slug=SLUG).first()
        if system is None:
            system = ai_system_create(slug=SLUG, name="Demo loans", is_public=True)
            system.description = (
                "Synthetic loan decisions made by seed_demo, with a known disparity by sex "
                "under model 1.0 that model 2.0 mostly removes."
            )
            system.save(update_fields=["description"])
        self._versions_declare(system)
        # The system's creation day fixes the dates, so every run makes the same requests.
        end = system.created_at.replace(hour=0, minute=0, second=0, microsecond=0)
        wanted = demo_decisions(count=decisions, seed=seed, end=end)
        stored = {
            bytes(lookup)
            for lookup in Decision.objects.filter(system=system).values_list(
                "client_id_lookup", flat=True
            )
        }
        new = [d for d in wanted if _lookup(system, d.request) not in stored]
        with tqdm(
            total=len(new), unit="decision", desc="decisions", disable=no_progress, file=sys.stderr
        ) as progress:
            for start in range(0, len(new), CHUNK):
                self._decisions_record(system, new[start : start + CHUNK])
                progress.update(len(new[start : start + CHUNK]))
        outcomes = self._outcomes_missing(system, wanted)
        for decision, outcome in tqdm(
            outcomes, unit="outcome", desc="outcomes", disable=no_progress, file=sys.stderr
        ):
            outcome_record(decision=decision, **outcome)
        reviews = self._reviews_add(system, wanted)
        self.stdout.write(
            f"{SLUG}: {len(new)} decisions, {len(outcomes)} outcomes and {reviews} reviews added "
            f"({len(wanted) - len(new)} decisions were there already)"
        )

    @staticmethod
    def _versions_declare(system: AISystem) -> None:
        for version in SEX_PENALTY:
            artefact = hashlib.sha256(f"{SLUG}/{MODEL}/{version}".encode()).hexdigest()
            with transaction.atomic(durable=True):
                model_version_register(
                    system=system,
                    name=MODEL,
                    version=version,
                    artefact_sha256=artefact,
                    training_data_description="Synthetic applications generated by seed_demo.",
                )

    @staticmethod
    def _decisions_record(system: AISystem, chunk: list[DemoDecision]) -> None:
        items = []
        for index, demo in enumerate(chunk):
            checked = DecisionSerializer(data=demo.request)
            checked.is_valid(raise_exception=True)
            items.append(BulkItem(index=index, data=checked.validated_data))
        for result in decisions_bulk_record(system=system, items=items):
            if result.status >= 400:
                raise CommandError(f"decision {chunk[result.index].request}: {result.error}")

    @staticmethod
    def _reviews_add(system: AISystem, wanted: list[DemoDecision]) -> int:
        """A demo reviewer looks at the denials of 1.0 close to the threshold: women's are
        mostly overturned, men's upheld, so the final outcome after review differs from the
        AI's. Decisions reviewed before are left alone."""
        users = get_user_model()
        reviewer = users.objects.filter(username=REVIEWER).first()
        if reviewer is None:
            # No password: the account cannot log in; it only signs the demo's reviews.
            reviewer = users.objects.create_user(REVIEWER, password=None)
            reviewer.user_permissions.add(
                Permission.objects.get(content_type__app_label="review", codename="review_decision")
            )
            reviewer = users.objects.get(pk=reviewer.pk)  # permissions are cached per instance
        review_settings_get_or_create(system=system).reviewers.add(reviewer)
        close = {
            demo.request["client_decision_id"]: demo.request["protected_attributes"].get("sex")
            for demo in wanted
            if demo.request["model"]["version"] == "1.0"
            and demo.request["output"]["label"] == "deny"
            and demo.request["output"]["score"] >= REVIEW_FROM_SCORE
        }
        chosen = sorted(close)[: REVIEWS * 2 : 2]  # every other one: a sample, not all
        by_lookup = {
            vault.client_id_lookup(system_id=system.pk, client_decision_id=client_id): client_id
            for client_id in chosen
        }
        decisions = decisions_by_client_id(system=system, client_ids=chosen).filter(
            review_item__isnull=True
        )
        found = sorted(
            (by_lookup[bytes(decision.client_id_lookup)], decision)
            for decision in decisions.select_related("entry", "subject", "system")
        )
        done = 0
        for client_id, decision in found:
            item = review_item_open(decision=decision, by=reviewer)
            item = review_claim(item=item, reviewer=reviewer)
            if close[client_id] == "female":
                review_override(
                    item=item,
                    reviewer=reviewer,
                    rationale="Demo: a sound application just under the threshold.",
                    output={"label": "approve", "score": decision.output["score"]},
                )
            else:
                review_confirm(
                    item=item, reviewer=reviewer, rationale="Demo: the denial is justified."
                )
            done += 1
        return done

    @staticmethod
    def _outcomes_missing(
        system: AISystem, wanted: list[DemoDecision]
    ) -> list[tuple[Decision, dict[str, Any]]]:
        by_lookup = {_lookup(system, d.request): d.outcome for d in wanted if d.outcome}
        decisions = (
            Decision.objects.filter(system=system, outcomes__isnull=True)
            .select_related("entry", "system", "subject")
            .order_by("pk")
        )
        return [
            (decision, by_lookup[bytes(decision.client_id_lookup)])
            for decision in decisions
            if bytes(decision.client_id_lookup) in by_lookup
        ]


def _lookup(system: AISystem, request: dict[str, Any]) -> bytes:
    """How a demo request's decision is found once stored (its client id's keyed hash)."""
    return vault.client_id_lookup(
        system_id=system.pk, client_decision_id=request["client_decision_id"]
    )
