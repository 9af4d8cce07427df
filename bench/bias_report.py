"""A full bias report over 1,000,000 decisions, against Fairlearn's MetricFrame on the same rows."""

from __future__ import annotations

import datetime
import os
import time
import warnings

import numpy as np
import pandas as pd
from django.db import connection, transaction

from bench import Figure, log_mark, log_revert, median, say
from bias.models import NO_SCORE, UNKNOWN, AttributeSet, OutcomeCount
from bias.selectors import bias_report_build
from bias.services import SCORE_BUCKETS, _digest, attributes_normalise

DECISIONS = int(os.environ.get("VERIDICT_BENCH_BIAS_DECISIONS", "1000000"))
REPETITIONS = max(1, int(os.environ.get("VERIDICT_BENCH_BIAS_REPS", "3")))
TARGET_SECONDS = 2.0
SLUG = "bench-bias"
SEXES = ("female", "male")
RACES = ("asian", "black", "hispanic", "white", "other")
VERSIONS = ("3.0", "3.1", "4.0")
DAYS = 365
FIRST_DAY = datetime.date(2025, 11, 26)
ACTUALS = (UNKNOWN, "repaid", "defaulted")
ATTRIBUTES = ["sex", "race"]


def decisions_make(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Synthetic decisions with a built-in disparity: scores lower for women and some races,
    approval at score 0.5, outcomes known for 70 %, 5 % reviewed with 20 % of those overridden."""
    n = DECISIONS
    sex = rng.integers(0, len(SEXES), n)
    race = rng.choice(len(RACES), n, p=[0.1, 0.15, 0.2, 0.5, 0.05])
    day = rng.integers(0, DAYS, n)
    version = np.minimum(day // 122, len(VERSIONS) - 1)  # a new model every four months
    shift = np.where(sex == 0, -0.06, 0.0) + np.array([0.0, -0.05, -0.03, 0.02, 0.0])[race]
    score = np.clip(rng.normal(0.55 + shift + 0.02 * version, 0.18), 0, 0.999)
    bucket = np.minimum((score * SCORE_BUCKETS).astype(np.int64), SCORE_BUCKETS - 1)
    approved = score >= 0.5
    repaid = rng.random(n) < 0.35 + 0.6 * score
    known = rng.random(n) < 0.7
    actual = np.where(known, np.where(repaid, 1, 2), 0)
    reviewed = rng.random(n) < 0.05
    overridden = reviewed & (rng.random(n) < 0.2)
    final = np.where(overridden, ~approved, approved)
    return {
        "group": sex * len(RACES) + race,
        "day": day,
        "version": version,
        "bucket": bucket,
        "approved": approved.astype(np.int64),
        "actual": actual,
        "reviewed": reviewed.astype(np.int64),
        "final": final.astype(np.int64),
    }


def counts_load(system_id: int, version_ids: list[int], decisions: dict[str, np.ndarray]) -> int:
    """Aggregates the decisions into counts rows and COPYs them; the number of rows."""
    sets = []
    for sex in SEXES:
        for race in RACES:
            attributes = attributes_normalise({"sex": sex, "race": race})
            sets.append(
                AttributeSet.objects.create(
                    system_id=system_id, attributes=attributes, digest=_digest(attributes)
                ).pk
            )
    columns = ("group", "day", "version", "bucket", "approved", "actual", "reviewed", "final")
    stacked = np.stack([decisions[name] for name in columns], axis=1)
    rows, counts = np.unique(stacked, axis=0, return_counts=True)
    labels = ("deny", "approve")
    table = OutcomeCount._meta.db_table
    with connection.cursor() as cursor:
        copy_sql = (
            f"COPY {table} (system_id, day, model_version_id, attribute_set_id, predicted, "
            "actual, final, reviewed, score_bucket, count) FROM STDIN"
        )
        with cursor.cursor.copy(copy_sql) as copy:
            for (group, day, version, bucket, approved, actual, reviewed, final), count in zip(
                rows.tolist(), counts.tolist(), strict=True
            ):
                copy.write_row(
                    (
                        system_id,
                        FIRST_DAY + datetime.timedelta(days=day),
                        version_ids[version],
                        sets[group],
                        labels[approved],
                        ACTUALS[actual],
                        labels[final],
                        bool(reviewed),
                        bucket if bucket >= 0 else NO_SCORE,
                        count,
                    )
                )
        cursor.execute(f"ANALYZE {table}")
    return len(rows)


def fairlearn_report(decisions: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
    """What the report computes that Fairlearn defines, for the intersections and both
    marginals: selection rate over every decision, TPR/FPR/FNR/TNR over those with an outcome."""
    from fairlearn.metrics import (
        MetricFrame,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_negative_rate,
        true_positive_rate,
    )

    frames = {}
    y_pred = decisions["approved"]
    y_true = (decisions["actual"] == 1).astype(np.int64)
    known = decisions["actual"] != 0
    features = {
        "sex|race": decisions["sex|race"],
        "sex": decisions["sex"],
        "race": decisions["race"],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, feature in features.items():
            frames[name] = MetricFrame(
                metrics=selection_rate, y_true=y_true, y_pred=y_pred, sensitive_features=feature
            ).by_group
            frames[f"{name} labelled"] = MetricFrame(
                metrics={
                    "tpr": true_positive_rate,
                    "fpr": false_positive_rate,
                    "fnr": false_negative_rate,
                    "tnr": true_negative_rate,
                },
                y_true=y_true[known],
                y_pred=y_pred[known],
                sensitive_features=feature[known],
            ).by_group
    return frames


def numpy_counts(decisions: dict[str, np.ndarray]) -> np.ndarray:
    """The peer: the same per-group tallies (decisions, selected, tp, fp, fn, tn) for the
    intersections and both marginals by np.bincount over the rows in memory, with no Python
    work per row; the rates are divisions of these."""
    groups = len(SEXES) * len(RACES)
    group = decisions["group"]
    approved = decisions["approved"].astype(bool)
    known = decisions["actual"] != 0
    repaid = decisions["actual"] == 1
    masks = (
        np.ones_like(approved),
        approved,
        known & approved & repaid,
        known & approved & ~repaid,
        known & ~approved & repaid,
        known & ~approved & ~repaid,
    )
    tallies = np.stack([np.bincount(group, weights=mask, minlength=groups) for mask in masks])
    by_sex = tallies.reshape(6, len(SEXES), len(RACES)).sum(axis=2)
    by_race = tallies.reshape(6, len(SEXES), len(RACES)).sum(axis=1)
    return np.concatenate([tallies, by_sex, by_race], axis=1)


def _check(report: dict, frames: dict[str, pd.DataFrame]) -> None:
    """The timed report must be right: its rates equal Fairlearn's within 1e-9."""
    for group in report["groups"]:
        expected = frames["sex|race"][group["key"]]
        assert abs(group["rates"]["selection_rate"]["value"] - expected) < 1e-9, group["key"]
        labelled = frames["sex|race labelled"].loc[group["key"]]
        for rate in ("tpr", "fpr", "fnr", "tnr"):
            assert abs(group["rates"][rate]["value"] - labelled[rate]) < 1e-9, (group, rate)
    for group in report["marginals"]["sex"]:
        assert abs(group["rates"]["selection_rate"]["value"] - frames["sex"][group["key"]]) < 1e-9


def run() -> list[Figure]:
    from audit.models import AISystem
    from audit.services.decisions import model_version_register

    say(f"\n== bias_report: a full report over {DECISIONS:,} decisions (sex x race, 365 days)")
    rng = np.random.default_rng(1126)
    decisions = decisions_make(rng)
    mark = log_mark()
    system = AISystem.objects.filter(slug=SLUG).first()
    if system is not None:  # left by a killed run
        OutcomeCount.objects.filter(system=system).delete()
        AttributeSet.objects.filter(system=system).delete()
    try:
        with transaction.atomic():
            system, _ = AISystem.objects.get_or_create(slug=SLUG, defaults={"name": "Bench loans"})
            version_ids = [
                model_version_register(system=system, name="scorer", version=number)[0].pk
                for number in VERSIONS
            ]
            started = time.perf_counter()
            rows = counts_load(system.pk, version_ids, decisions)
        say(
            f"  loaded {rows:,} count rows for {DECISIONS:,} decisions "
            f"in {time.perf_counter() - started:.1f} s (not timed)"
        )
        # Fairlearn's input, built in memory before its clock starts: the rows as arrays.
        group = decisions["group"]
        sex = np.array(SEXES)[group // len(RACES)]
        race = np.array(RACES)[group % len(RACES)]
        decisions["sex"], decisions["race"] = pd.Series(sex), pd.Series(race)
        decisions["sex|race"] = pd.Series(np.char.add(np.char.add(sex, "|"), race))

        bias_report_build(system=system, attributes=ATTRIBUTES)  # warm-up
        ours, theirs, peer = [], [], []
        frames: dict[str, pd.DataFrame] = {}
        report: dict = {}
        for repetition in range(REPETITIONS):
            start = time.perf_counter()
            report = bias_report_build(system=system, attributes=ATTRIBUTES)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            frames = fairlearn_report(decisions)
            theirs.append(time.perf_counter() - start)
            start = time.perf_counter()
            numpy_counts(decisions)
            peer.append(time.perf_counter() - start)
            say(
                f"  repetition {repetition + 1}: report {ours[-1] * 1000:.0f} ms, "
                f"Fairlearn MetricFrame {theirs[-1] * 1000:.0f} ms, "
                f"numpy bincount {peer[-1] * 1000:.0f} ms"
            )
        assert report["total"] == DECISIONS
        _check(report, frames)
        say("  checked: the report's rates equal Fairlearn's within 1e-9")
    finally:
        with transaction.atomic():
            if system is not None and system.pk:
                OutcomeCount.objects.filter(system=system).delete()
                AttributeSet.objects.filter(system=system).delete()
        log_revert(mark)  # the model versions' entries, and with them the bench's rows
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM audit_modelversion WHERE system_id IN "
                "(SELECT id FROM audit_aisystem WHERE slug = %s)",
                [SLUG],
            )
            cursor.execute("DELETE FROM audit_aisystem WHERE slug = %s", [SLUG])
    value, ceiling = median(ours), median(theirs)
    ratios = [fairlearn / report for report, fairlearn in zip(ours, theirs, strict=True)]
    peer_ratios = [floor / report for report, floor in zip(ours, peer, strict=True)]
    return [
        Figure(
            f"bias_report: {DECISIONS:,} decisions, sex x race",
            value * 1000,
            "ms",
            ceiling * 1000,
            median(ratios),
            f"< {TARGET_SECONDS:g} s",
            value < TARGET_SECONDS,
        ),
        Figure(
            "bias_report peer: numpy bincount in memory",
            value * 1000,
            "ms",
            median(peer) * 1000,
            median(peer_ratios),
        ),
    ]
