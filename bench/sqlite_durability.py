"""What durable acknowledgements cost on the embedded default: decisions/s on SQLite with
`synchronous=FULL` (the setting: a 201 survives a power cut) against the same requests with
`synchronous=NORMAL` (survives a crashed process only), in one process, rounds interleaved.

The parent (`python -m bench sqlite_durability`) runs the measurement in a child process of its own,
because the bench package sets up Django on PostgreSQL and a process has one database setting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
REQUESTS = int(os.environ.get("VERIDICT_BENCH_SQLITE_REQUESTS", "300"))
ROUNDS = 3
COMMITS = 300  # raw sqlite3 commits per mode and round, for the peer figure
MODES = ("FULL", "NORMAL")


def run() -> list:
    from bench import KEY_FILES, Figure, say

    say("\n== sqlite_durability: POST /api/v1/decisions on SQLite, synchronous FULL vs NORMAL")
    with tempfile.TemporaryDirectory(prefix="veridict-bench-sqlite-") as folder:
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")
        }
        environment.update(
            {f"VERIDICT_{setting}": str(path) for setting, path in KEY_FILES.items()},
            DATABASE_URL=f"sqlite:///{folder}/bench.sqlite3",
            VERIDICT_VAR_DIR=f"{folder}/var",
            VERIDICT_MASTER_KEY_FILE=f"{folder}/master.key",
            DJANGO_DEBUG="false",
            DJANGO_SECURE_SSL_REDIRECT="false",
            VERIDICT_THROTTLE_RATE="100000000/min",
            PYTHONUNBUFFERED="1",
        )
        finished = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), folder],
            cwd=BASE_DIR,
            env=environment,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
    found = re.search(r"^RESULT (\{.*\})$", finished.stdout, re.MULTILINE)
    if finished.returncode or found is None:
        raise RuntimeError(f"the SQLite run failed:\n{finished.stdout[-3000:]}\n{finished.stderr}")
    result = json.loads(found.group(1))
    api = {mode: statistics.median(rates) for mode, rates in result["api"].items()}
    raw = {mode: statistics.median(rates) for mode, rates in result["raw"].items()}
    for mode in MODES:
        say(
            f"  synchronous={mode}: {api[mode]:,.0f} decisions/s (rounds "
            f"{', '.join(f'{rate:,.0f}' for rate in result['api'][mode])}); "
            f"raw one-row commits {raw[mode]:,.0f}/s"
        )
    return [
        Figure(
            "sqlite FULL intake",
            api["FULL"],
            "req/s",
            api["NORMAL"],
            api["FULL"] / api["NORMAL"],
        ),
        Figure(
            "sqlite FULL commit peer",
            raw["FULL"],
            "commit/s",
            raw["NORMAL"],
            raw["FULL"] / raw["NORMAL"],
        ),
    ]


# --- The child: Django on a fresh SQLite file ----------------------------------------------------


def _raw_commits(path: Path, mode: str) -> float:
    """One-row INSERT transactions per second on a WAL database: the fsync that FULL adds."""
    database = sqlite3.connect(path, isolation_level=None)
    database.execute("PRAGMA journal_mode=WAL")
    database.execute(f"PRAGMA synchronous={mode}")
    database.execute("CREATE TABLE IF NOT EXISTS row (id INTEGER PRIMARY KEY, body BLOB)")
    body = os.urandom(600)
    start = time.perf_counter()
    for _ in range(COMMITS):
        database.execute("BEGIN IMMEDIATE")
        database.execute("INSERT INTO row (body) VALUES (?)", [body])
        database.execute("COMMIT")
    elapsed = time.perf_counter() - start
    database.close()
    return COMMITS / elapsed


def child(folder: Path) -> dict:
    sys.path.insert(0, str(BASE_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veridict.settings")
    import django

    django.setup()
    import structlog
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from audit import vault
    from audit.api import DECISION_EXAMPLE
    from audit.services.systems import ai_system_create, api_key_create
    from timestamping import keys

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    call_command("migrate", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)
    keys.write_secret(
        Path(os.environ["VERIDICT_MASTER_KEY_FILE"]),
        vault.master_key_text(vault.data_key_new()).encode(),
    )
    system = ai_system_create(slug="bench-sqlite", name="Bench SQLite")
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {api_key_create(system=system, name='bench')}")

    def post(identifier: str) -> None:
        body = {
            **DECISION_EXAMPLE,
            "client_decision_id": f"loan-{identifier}",
            "subject_ref": f"applicant-{identifier}",
        }
        response = client.post(
            "/api/v1/decisions", json.dumps(body), content_type="application/json"
        )
        assert response.status_code == 201, response.content

    for number in range(20):  # connections, caches, the first signature's key publication
        post(f"warm-{number}")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 2, "the settings no longer ask for synchronous=FULL"
    api: dict[str, list[float]] = {mode: [] for mode in MODES}
    raw: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_number in range(ROUNDS):
        for mode in MODES:
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA synchronous={mode}")
            start = time.perf_counter()
            for number in range(REQUESTS):
                post(f"{mode}-{round_number}-{number}")
            api[mode].append(REQUESTS / (time.perf_counter() - start))
            raw[mode].append(_raw_commits(folder / "raw.sqlite3", mode))
    return {"api": api, "raw": raw}


if __name__ == "__main__":
    print("RESULT " + json.dumps(child(Path(sys.argv[1]))), flush=True)
