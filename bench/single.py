"""Single-request ingestion: POST /api/v1/decisions requests/s against a bare DRF endpoint."""

from __future__ import annotations

import contextlib
import cProfile
import http.client
import json
import os
import pstats
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from unittest import mock

from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

import bench
from bench import Figure, log_mark, log_revert, median, percentile, say

CLIENTS = 16
WORKERS = 2  # the machine has 2 cores
# 1: gunicorn's sync workers (one request at a time each); more: gthread workers, whose threads
# overlap one request's database waits with another's work. Both servers get the same.
THREADS = max(1, int(os.environ.get("VERIDICT_BENCH_SINGLE_THREADS", "1")))
SECONDS = float(os.environ.get("VERIDICT_BENCH_SINGLE_SECONDS", "10"))
WARMUP_SECONDS = 2.0
REPETITIONS = max(1, int(os.environ.get("VERIDICT_BENCH_SINGLE_REPS", "3")))
PROFILE_REQUESTS = int(os.environ.get("VERIDICT_BENCH_SINGLE_PROFILE", "300"))
TARGET_RATIO = 0.7
TARGET_P99_MS = 150.0
# Production keeps the throttle's cache in Redis (REDIS_URL); without one answering here, the
# servers fall back to the database cache, and the bench says so.
REDIS_URL = os.environ.get("VERIDICT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
# Persistent connections, for both servers alike: what a deployment sets in its DATABASE_URL
# (0 opens one per request, which adds the same few milliseconds to both sides).
CONN_MAX_AGE = int(os.environ.get("VERIDICT_BENCH_SINGLE_CONN_MAX_AGE", "60"))
SERVER_DATABASE_URL = (
    bench.DATABASE_URL
    + ("&" if "?" in bench.DATABASE_URL else "?")
    + f"conn_max_age={CONN_MAX_AGE}"
)
SLUG = "bench-single"
# The ceiling's one table (bench/bare.py inserts into it); created and emptied here.
BARE_TABLE = "bench_bare_row"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {BARE_TABLE} "
    "(id bigserial PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)
DECISIONS = "/api/v1/decisions"
READY = "Application loaded"  # logged by each worker once it has imported the application
BARE = "/bare"


def decision_body(identifier: str) -> dict[str, Any]:
    """The schema's example decision, about a new applicant each time."""
    from audit.api import DECISION_EXAMPLE  # after django.setup(), which bench/__main__ runs

    return {
        **DECISION_EXAMPLE,
        "client_decision_id": f"loan-{identifier}",
        "subject_ref": f"applicant-{identifier}",
    }


# --- Servers ------------------------------------------------------------------------------------


def _redis_reachable() -> bool:
    parts = urllib.parse.urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


def server_environment() -> dict[str, str]:
    environment = {
        **os.environ,
        "DATABASE_URL": SERVER_DATABASE_URL,
        # bench/__init__.py (imported by the ceiling's app) reads this one instead.
        "VERIDICT_BENCH_DATABASE_URL": SERVER_DATABASE_URL,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        # Throttling stays on, as in production, with a rate the benchmark never reaches.
        "VERIDICT_THROTTLE_RATE": "100000000/min",
        "PYTHONUNBUFFERED": "1",
    }
    environment.pop("REDIS_URL", None)
    if _redis_reachable():
        environment["REDIS_URL"] = REDIS_URL
    return environment


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path


def server_start(name: str, app: str, log: Path) -> Server:
    """gunicorn, WORKERS workers of THREADS threads, on a port the kernel picks (read back from
    its log)."""
    hooks = log.with_suffix(".hooks.py")
    hooks.write_text(
        f"def post_worker_init(worker):\n    worker.log.info({READY!r})\n", encoding="utf-8"
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", app, "--bind", "127.0.0.1:0", "--config", str(hooks)]
            + ["--workers", str(WORKERS), "--threads", str(THREADS)]
            + ["--log-level", "info", "--timeout", "60"],
            cwd=settings.BASE_DIR,
            env=server_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 180
    while True:
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gunicorn {name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    server = Server(name, process, int(found.group(1)), log)
    # A booted worker still imports the application, which on a busy machine takes longer than
    # the load generator waits for an answer: wait for the hook to say that each has loaded it.
    while log.read_text().count(READY) < WORKERS:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn {name} did not load the app:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return server


def server_stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=15)


# --- Load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What one load run measured."""

    requests: int
    non_2xx: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # User and system CPU of the server's workers during the run: unlike the rate, what other
    # load on a shared machine hardly moves (the database's CPU is not in it).
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        """Worker CPU per request."""
        return self.cpu_seconds / self.requests * 1000


WRK_SCRIPT = """
local counter = 0
local threads = {}
local next_thread = 1

function setup(thread)
  thread:set("number", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] .. "-" .. number
  path = args[2]
  key = args[3]
  template = args[4]
end

function request()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  local headers = {["Content-Type"] = "application/json", ["Idempotency-Key"] = id}
  if key ~= "" then headers["Authorization"] = "Api-Key " .. key end
  return wrk.format("POST", path, headers, (string.gsub(template, "@ID@", id)))
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "WRK {\\"requests\\": %d, \\"seconds\\": %f, \\"non_2xx\\": %d, \\"errors\\": %d, "
      .. "\\"p50_us\\": %f, \\"p99_us\\": %f}\\n",
    summary.requests, summary.duration / 1e6, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def load_wrk(port: int, path: str, key: str, tag: str, seconds: float) -> Load:
    """wrk, in C, so that the load costs the server's two cores as little as it can."""
    template = json.dumps(decision_body("@ID@"))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        finished = subprocess.run(
            [
                "wrk",
                "-t",
                "2",
                "-c",
                str(CLIENTS),
                "-d",
                f"{max(1, round(seconds))}s",
                "--timeout",
                "10s",
            ]
            + ["-s", script.name, f"http://127.0.0.1:{port}", "--", tag, path, key, template],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        os.unlink(script.name)
    found = re.search(r"^WRK (\{.*\})$", finished.stdout, re.MULTILINE)
    if finished.returncode or found is None:
        raise RuntimeError(f"wrk printed no result:\n{finished.stdout}\n{finished.stderr}")
    result = json.loads(found.group(1))
    return Load(
        requests=result["requests"],
        non_2xx=result["non_2xx"],
        errors=result["errors"],
        seconds=result["seconds"],
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
    )


def load_threads(port: int, path: str, key: str, tag: str, seconds: float) -> Load:
    """Without wrk: CLIENTS threads with http.client, reconnecting when the server closes."""
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    failures = [0] * CLIENTS
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        connection_ = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        counter = 0
        while time.monotonic() < stop_at:
            counter += 1
            identifier = f"{tag}-{number}-{counter}"
            headers = {"Content-Type": "application/json", "Idempotency-Key": identifier}
            if key:
                headers["Authorization"] = f"Api-Key {key}"
            start = time.perf_counter()
            try:
                connection_.request("POST", path, json.dumps(decision_body(identifier)), headers)
                response = connection_.getresponse()
                response.read()
                ok = 200 <= response.status < 300
            except (OSError, http.client.HTTPException):
                connection_.close()
                ok = False
            latencies[number].append(time.perf_counter() - start)
            failures[number] += not ok

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [latency for per_client in latencies for latency in per_client]
    return Load(
        requests=len(every),
        non_2xx=sum(failures),
        errors=0,
        seconds=time.monotonic() - started,
        p50_ms=percentile(every, 0.5) * 1000,
        p99_ms=percentile(every, 0.99) * 1000,
    )


LOAD: Callable[[int, str, str, str, float], Load] = (
    load_wrk if shutil.which("wrk") else load_threads
)


# --- Per-request breakdown (run in a child process with the servers' environment) ---------------


@contextlib.contextmanager
def breakdown_timed() -> Iterator[tuple[dict[str, float], dict[str, int]]]:
    """Exclusive seconds per phase of the requests run inside: a phase nested in another (a query
    inside the key lookup) counts for itself only. The code timed is not touched."""
    import rfc8785
    from django.db.models.sql.compiler import SQLCompiler, SQLInsertCompiler
    from rest_framework_api_key.crypto import KeyGenerator

    from audit import vault
    from audit.serializers import DecisionSerializer
    from audit.services import decisions
    from audit.throttling import SystemKeyRateThrottle
    from timestamping import canonical, keys
    from timestamping.services import entries

    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    stack: list[list[float]] = []  # per active phase: [time spent in phases nested in it]

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack.append([0.0])
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                (nested,) = stack.pop()
                spent[name] += elapsed - nested
                calls[name] += 1
                if stack:
                    stack[-1][0] += elapsed

        return wrapper

    targets = [
        (KeyGenerator, "verify", "auth: API key hash (SHA-512)"),
        (DecisionSerializer, "is_valid", "validation (DecisionSerializer)"),
        (rfc8785, "dumps", "canonicalisation (RFC 8785)"),
        (canonical, "dumps", "canonicalisation (RFC 8785)"),
        (vault, "_encrypt", "encryption (AES-GCM, key wrap)"),
        (vault, "_decrypt", "encryption (AES-GCM, key wrap)"),
        (vault, "subject_lookup", "subject lookup HMAC"),
        (keys, "sign", "SET signing (Ed25519)"),
        (entries, "seq_lock_share", "advisory lock (shared)"),
        (SystemKeyRateThrottle, "allow_request", "throttle (Redis or cache table)"),
        (SQLCompiler, "execute_sql", "ORM: compiling SQL, making rows"),
        (SQLInsertCompiler, "execute_sql", "ORM: compiling SQL, making rows"),
    ]
    # What the bias app adds to each decision's transaction (its counts), where it does.
    if hasattr(decisions, "counts_decisions_add"):
        targets.append((decisions, "counts_decisions_add", "bias counts (bias app)"))
    with contextlib.ExitStack() as patches:
        for owner, attribute, name in targets:
            original = getattr(owner, attribute)
            patches.enter_context(mock.patch.object(owner, attribute, timed(name, original)))
        # The wrapper itself, not the django.db.connection proxy: atomic() commits through it.
        wrapper = connections[DEFAULT_DB_ALIAS]
        commit = timed("commit (fsync)", wrapper.commit)
        patches.enter_context(mock.patch.object(wrapper, "commit", commit))

        def query(execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any) -> Any:
            return timed("queries (round trips, ORM)", execute)(sql, params, many, ctx)

        patches.enter_context(connection.execute_wrapper(query))
        yield spent, calls


def profile_in_process(key: str, count: int) -> dict[str, Any]:
    """`count` decisions through the whole Django stack, in this process, one at a time."""
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")

    def post(identifier: str) -> None:
        response = client.post(
            DECISIONS,
            json.dumps(decision_body(identifier)),
            content_type="application/json",
            secure=True,
        )
        assert response.status_code == 201, response.content

    for n in range(20):  # connections, caches, the first signature's key publication
        post(f"profile-warm-{n}")
    totals: list[float] = []
    with breakdown_timed() as (spent, calls):
        for n in range(count):
            start = time.perf_counter()
            post(f"profile-{n}")
            totals.append(time.perf_counter() - start)
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(count // 3):
        post(f"profile-cprofile-{n}")
    profiler.disable()
    stats = pstats.Stats(profiler)
    hot = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:12]  # tottime
    return {
        "count": count,
        "bare_median_ms": _bare_in_process(count),
        "mean_ms": sum(totals) / count * 1000,
        "median_ms": median(totals) * 1000,
        "phases_ms": {name: seconds / count * 1000 for name, seconds in spent.items()},
        "calls": {name: number / count for name, number in calls.items()},
        "hot": [
            {
                "function": f"{Path(file).name}:{line} {function}",
                "tottime_ms": row[2] / (count // 3) * 1000,
            }
            for (file, line, function), row in hot
        ],
    }


def _bare_in_process(count: int) -> float:
    """The ceiling's request, timed the same way: median milliseconds."""
    from django.test import Client

    import bench.bare  # noqa: F401 -- switches this process's URLconf to the bare endpoint

    client = Client()
    totals = []
    for n in range(count):
        body = json.dumps(decision_body(f"bare-profile-{n}"))
        start = time.perf_counter()
        response = client.post(BARE, body, content_type="application/json", secure=True)
        totals.append(time.perf_counter() - start)
        assert response.status_code == 201, response.content
    return median(totals) * 1000


def profile_run(key: str) -> dict[str, Any]:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.single", "--profile", str(PROFILE_REQUESTS)],
        cwd=settings.BASE_DIR,
        env={**server_environment(), "VERIDICT_BENCH_SINGLE_KEY": key},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found = re.search(r"^PROFILE (\{.*\})$", finished.stdout, re.MULTILINE)
    if finished.returncode or found is None:
        raise RuntimeError(f"the profile failed:\n{finished.stdout[-3000:]}\n{finished.stderr}")
    return json.loads(found.group(1))


# --- Setup and cleanup --------------------------------------------------------------------------


def _master_key_ensure() -> None:
    from audit import vault
    from timestamping import keys

    path = Path(settings.MASTER_KEY_FILE)
    if not path.exists():
        keys.write_secret(path, vault.master_key_text(vault.data_key_new()).encode())


def _fsync_check() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW fsync")
        (fsync,) = cursor.fetchone()
        cursor.execute("SHOW synchronous_commit")
        (synchronous_commit,) = cursor.fetchone()
    if fsync != "on" or synchronous_commit == "off":
        raise RuntimeError(
            f"PostgreSQL runs with fsync={fsync}, synchronous_commit={synchronous_commit}: "
            "the single benchmark is defined with durable commits"
        )
    return f"fsync={fsync}, synchronous_commit={synchronous_commit}"


def _audit_rows_delete() -> None:
    """What the run added to the audit tables, before log_revert deletes its entries.

    Like log_revert, with the append-only and foreign-key triggers off for this one transaction,
    only ever in the throwaway bench database."""
    from audit.models import AISystem, Decision, ModelVersion, Subject, SystemAPIKey

    system_ids = list(AISystem.objects.filter(slug=SLUG).values_list("pk", flat=True))
    if not system_ids:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for model in (Decision, Subject, ModelVersion, SystemAPIKey):
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE system_id = ANY(%s)",  # noqa: S608
                [system_ids],
            )
        cursor.execute(
            f"DELETE FROM {AISystem._meta.db_table} WHERE id = ANY(%s)",  # noqa: S608
            [system_ids],
        )


def _setup() -> str:
    """The bare table, the cache table, the master key and a system with a fresh key."""
    from audit.services.systems import ai_system_create, api_key_create

    _master_key_ensure()
    call_command("createcachetable", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(CREATE_TABLE)
        cursor.execute(f"TRUNCATE {BARE_TABLE}")
    _audit_rows_delete()  # what a killed run left
    system = ai_system_create(slug=SLUG, name="Bench single")
    return api_key_create(system=system, name="bench")


def _stored_decisions() -> int:
    from audit.models import Decision

    return Decision.objects.filter(system__slug=SLUG).count()


def _bare_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {BARE_TABLE}")  # noqa: S608
        return cursor.fetchone()[0]


# --- The benchmark ------------------------------------------------------------------------------


def _workers_cpu(server: Server) -> float:
    """CPU seconds the server's workers have used so far."""
    pid = server.process.pid
    total = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _measure(server: Server, path: str, key: str, tag: str) -> Load:
    LOAD(server.port, path, key, f"{tag}-warm", WARMUP_SECONDS)
    cpu = _workers_cpu(server)
    load = LOAD(server.port, path, key, tag, SECONDS)
    load = replace(load, cpu_seconds=_workers_cpu(server) - cpu)
    if load.non_2xx or load.errors:
        raise RuntimeError(
            f"{server.name}: {load.non_2xx} non-2xx answers and {load.errors} socket errors "
            f"of {load.requests}:\n{server.log.read_text()[-3000:]}"
        )
    return load


def run() -> list[Figure]:
    say(
        f"\n== single: POST {DECISIONS} with {CLIENTS} clients, gunicorn {WORKERS} workers "
        f"({'sync' if THREADS == 1 else f'gthread, {THREADS} threads each'}), "
        f"{REPETITIONS} x {SECONDS:.0f} s each, ceiling a bare DRF insert"
    )
    say(f"PostgreSQL {_fsync_check()}; load generator {LOAD.__name__}")
    environment = server_environment()
    say(
        "throttle cache: "
        + (f"Redis {environment['REDIS_URL']}" if "REDIS_URL" in environment else "the database")
    )
    key = _setup()
    mark = log_mark()
    folder = Path(tempfile.mkdtemp(prefix="bench-single-"))
    servers: list[Server] = []
    try:
        servers.append(server_start("ceiling", "bench.bare:application", folder / "bare.log"))
        servers.append(server_start("decisions", "veridict.wsgi:application", folder / "app.log"))
        bare_server, app_server = servers
        ours: list[Load] = []
        ceilings: list[Load] = []
        for repetition in range(1, REPETITIONS + 1):
            # Alternated, so that a change in the machine's load hits both alike.
            order = [("ceiling", bare_server), ("decisions", app_server)]
            for name, server in order if repetition % 2 else order[::-1]:
                if name == "ceiling":
                    ceilings.append(_measure(server, BARE, "", f"bare-{repetition}"))
                else:
                    ours.append(_measure(server, DECISIONS, key, f"rep-{repetition}"))
            say(
                f"  rep {repetition}: decisions {ours[-1].rate:7.1f}/s "
                f"(p50 {ours[-1].p50_ms:5.1f} ms, p99 {ours[-1].p99_ms:6.1f} ms); "
                f"ceiling {ceilings[-1].rate:7.1f}/s "
                f"(p50 {ceilings[-1].p50_ms:5.1f} ms, p99 {ceilings[-1].p99_ms:6.1f} ms); "
                f"ratio {ours[-1].rate / ceilings[-1].rate:.3f}; worker CPU per request "
                f"{ours[-1].cpu_ms:.2f} ms, ceiling {ceilings[-1].cpu_ms:.2f} ms"
            )
        acknowledged = sum(load.requests for load in ours)
        stored = _stored_decisions()
        # wrk counts answers; every 2xx must be a stored decision (warm-up runs store some more).
        if stored < acknowledged:
            raise RuntimeError(f"{acknowledged} decisions acknowledged, {stored} stored")
        if _bare_rows() < sum(load.requests for load in ceilings):
            raise RuntimeError("the ceiling acknowledged rows it did not store")
        profile = profile_run(key)
    finally:
        for server in servers:
            server_stop(server)
        _audit_rows_delete()
        log_revert(mark)
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {BARE_TABLE}")
        shutil.rmtree(folder, ignore_errors=True)

    ratios = [load.rate / ceiling.rate for load, ceiling in zip(ours, ceilings, strict=True)]
    ratio = median(ratios)
    rate = median([load.rate for load in ours])
    ceiling_rate = median([load.rate for load in ceilings])
    p99 = median([load.p99_ms for load in ours])
    cpu_ms, ceiling_cpu_ms = median([o.cpu_ms for o in ours]), median([c.cpu_ms for c in ceilings])
    say(
        f"single median: {rate:,.1f} decisions/s; ceiling {ceiling_rate:,.1f}/s; "
        f"ratio {ratio:.3f}; p99 {p99:.1f} ms "
        f"(ceiling p99 {median([c.p99_ms for c in ceilings]):.1f} ms)\n"
        f"worker CPU per request, median: {cpu_ms:.2f} ms, ceiling {ceiling_cpu_ms:.2f} ms "
        f"(ratio {ceiling_cpu_ms / cpu_ms:.3f}: what the rate ratio would be with the "
        "workers' CPU the only limit)"
    )
    _profile_print(profile)
    return [
        Figure(
            "single: POST /decisions req/s, 16 clients",
            rate,
            "/s",
            ceiling_rate,
            ratio,
            f">= {TARGET_RATIO} ratio",
            ratio >= TARGET_RATIO,
        ),
        Figure(
            "single: p99 latency, 16 clients",
            p99,
            "ms",
            None,
            None,
            f"< {TARGET_P99_MS:.0f} ms",
            p99 < TARGET_P99_MS,
        ),
    ]


def _profile_print(profile: dict[str, Any]) -> None:
    total = profile["mean_ms"]
    say(
        f"where one decision's time goes, in one process, one request at a time "
        f"({profile['count']} requests, mean {total:.2f} ms, median {profile['median_ms']:.2f} ms):"
    )
    phases = profile["phases_ms"]
    for name, spent in sorted(phases.items(), key=lambda item: -item[1]):
        calls = profile["calls"][name]
        say(f"  {name:<40} {spent:7.3f} ms  {spent / total:6.1%}  ({calls:.1f} calls)")
    other = total - sum(phases.values())
    say(f"  {'other (Django, DRF, querysets, JSON, …)':<40} {other:7.3f} ms  {other / total:6.1%}")
    say(
        f"the ceiling's bare request, timed the same way: median {profile['bare_median_ms']:.2f} ms"
    )
    say("hottest functions by own time (cProfile, per request):")
    for row in profile["hot"]:
        say(f"  {row['tottime_ms']:7.3f} ms  {row['function']}")


if __name__ == "__main__":
    # The child of profile_run: the same environment as the servers, this process's own Django.
    if sys.argv[1:2] != ["--profile"]:
        sys.exit("usage: python -m bench.single --profile COUNT")
    result = profile_in_process(os.environ["VERIDICT_BENCH_SINGLE_KEY"], int(sys.argv[2]))
    print("PROFILE " + json.dumps(result), flush=True)
