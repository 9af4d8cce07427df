"""Document upload throughput: a 1 GiB multipart POST /api/v1/documents through gunicorn, against
hashlib's SHA-256 over the same bytes; and how far the server's peak RSS grows meanwhile."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command

from audit.models import AISystem, Document
from audit.services.systems import api_key_create
from audit.uploads import BODY_READ_SIZE
from bench import Figure, log_mark, log_revert, median, say

MIB = 1 << 20
UPLOAD_MIB = max(1, int(os.environ.get("VERIDICT_BENCH_UPLOAD_MIB", "1024")))
REPETITIONS = max(1, int(os.environ.get("VERIDICT_BENCH_UPLOAD_REPS", "3")))
TARGET_RATIO = 0.4
RSS_LIMIT_MIB = 64
SYSTEM_SLUG = "bench-upload"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/<pid>/status: the upload benchmark needs Linux")


def _blocks(first: bytes, block: bytes) -> Iterator[bytes]:
    """The document: a distinct first MiB (a new digest each repetition), then one random MiB
    repeated, so the client spends no time making bytes."""
    yield first
    for _ in range(UPLOAD_MIB - 1):
        yield block


def _post(
    port: int, pieces: Iterator[bytes], length: int, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    """POST a body streamed from `pieces` with an explicit Content-Length; (status, JSON)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request(
            "POST",
            "/api/v1/documents",
            body=pieces,
            headers={**headers, "Content-Length": str(length)},
        )
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, {"body": raw[:2000].decode(errors="replace")}


def _upload(
    port: int, key: str, blocks: Iterator[bytes], size: int
) -> tuple[int, dict[str, object]]:
    """POST the document as multipart/form-data, as an AI system uploads one."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        yield from blocks
        yield tail

    return _post(
        port,
        body(),
        len(head) + size + len(tail),
        {
            "Authorization": f"Api-Key {key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )


def peer_application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The peer: a bare WSGI app that reads the document (the raw body) from gunicorn's
    wsgi.input as the upload view does, a MiB at a time, and hashes it: no Django, no
    multipart, no database. What any app served by gunicorn this way could reach."""
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    while remaining > 0:
        piece = stream.read(min(BODY_READ_SIZE, remaining))
        if not piece:
            break
        digest.update(piece)
        remaining -= len(piece)
    answer = json.dumps({"sha256": digest.hexdigest()}).encode()
    start_response(
        "201 Created",
        [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
    )
    return [answer]


@contextlib.contextmanager
def _gunicorn(application: str, log: Path) -> Iterator[tuple[int, int]]:
    """gunicorn with one sync worker serving `application` on the bench database, for as long as
    the block runs; (port, worker pid)."""
    port = _free_port()
    environment = {
        **os.environ,  # DATABASE_URL and the key files, as bench/__init__.py set them
        "DJANGO_SECURE_SSL_REDIRECT": "false",  # DEBUG is off, and this is plain HTTP
        "DJANGO_MEDIA_ROOT": str(log.parent / "media"),
    }
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", application, "--bind", f"127.0.0.1:{port}"]
            + ["--workers", "1", "--timeout", "600"],
            cwd=settings.BASE_DIR,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    try:
        deadline = time.monotonic() + 60
        # Listening is not enough: the master binds before it forks the worker.
        while not (_accepts(port) and children.read_text().split()):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield port, int(children.read_text().split()[0])
    finally:
        server.terminate()
        server.wait(timeout=60)


def _answer_checked(status: int, answer: dict[str, object], digest: str, log: Path) -> None:
    if status not in (200, 201):
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the upload answered {status} {answer}: {tail}")
    if answer.get("sha256") != digest:
        raise AssertionError("the server hashed other bytes than were sent")


def run() -> list[Figure]:
    say(
        f"\n== upload: {UPLOAD_MIB:,} MiB multipart POST /api/v1/documents through gunicorn "
        f"(1 sync worker), {REPETITIONS} repetitions"
    )
    # Without REDIS_URL the API's throttles keep their counts in the database cache table,
    # which `migrate` (all that bench.prepare runs) does not create.
    call_command("createcachetable", verbosity=0)
    system, _ = AISystem.objects.get_or_create(
        slug=SYSTEM_SLUG, defaults={"name": "Upload benchmark", "store_documents": False}
    )
    # A run killed before its clean-up left documents whose entries prepare() discarded.
    Document.objects.filter(system=system).delete()
    key = api_key_create(system=system, name=f"bench {uuid.uuid4().hex[:8]}")
    block = os.urandom(MIB)
    size = UPLOAD_MIB * MIB
    mark = log_mark()
    rates: list[float] = []
    peer_rates: list[float] = []
    ceilings: list[float] = []
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            _gunicorn("veridict.wsgi", Path(folder) / "veridict.log") as (port, worker),
            _gunicorn("bench.upload:peer_application", Path(folder) / "peer.log") as (
                peer_port,
                _,
            ),
        ):
            log = Path(folder) / "veridict.log"
            # Warmed up, so that the baseline holds every import and first-request cache.
            warm_up = b"warm-up"
            status, answer = _upload(port, key, iter([warm_up]), len(warm_up))
            _answer_checked(status, answer, hashlib.sha256(warm_up).hexdigest(), log)
            before = _peak_rss_mib(worker)
            for repetition in range(1, REPETITIONS + 1):
                first = os.urandom(MIB)
                # The ceiling and the peer run next to each upload, so that all three see the
                # same state of a shared machine.
                start = time.perf_counter()
                digest = hashlib.sha256()
                for piece in _blocks(first, block):
                    digest.update(piece)
                ceilings.append(UPLOAD_MIB / (time.perf_counter() - start))

                start = time.perf_counter()
                status, answer = _post(
                    peer_port,
                    _blocks(first, block),
                    size,
                    {"Content-Type": "application/octet-stream"},
                )
                peer_rates.append(UPLOAD_MIB / (time.perf_counter() - start))
                _answer_checked(status, answer, digest.hexdigest(), Path(folder) / "peer.log")

                start = time.perf_counter()
                status, answer = _upload(port, key, _blocks(first, block), size)
                rates.append(UPLOAD_MIB / (time.perf_counter() - start))
                _answer_checked(status, answer, digest.hexdigest(), log)
                say(
                    f"  rep {repetition}: upload {rates[-1]:,.0f} MiB/s; "
                    f"peer {peer_rates[-1]:,.0f} MiB/s; hashlib {ceilings[-1]:,.0f} MiB/s; "
                    f"ratio {rates[-1] / ceilings[-1]:.3f} "
                    f"(peer {peer_rates[-1] / ceilings[-1]:.3f})"
                )
            peak = _peak_rss_mib(worker)
    finally:
        # The documents' entries are not sealed: undone, so that the seal benchmark finds only
        # the entries it loads itself.
        Document.objects.filter(system=system).delete()
        log_revert(mark)
    ratio = median([rate / ceiling for rate, ceiling in zip(rates, ceilings, strict=True)])
    peer_ratio = median(
        [rate / ceiling for rate, ceiling in zip(peer_rates, ceilings, strict=True)]
    )
    growth = peak - before
    say(
        f"upload median {median(rates):,.0f} MiB/s, ratio {ratio:.3f}; "
        f"peer {median(peer_rates):,.0f} MiB/s, ratio {peer_ratio:.3f}; "
        f"hashlib {median(ceilings):,.0f} MiB/s\n"
        f"worker peak RSS {peak:.1f} MiB: {growth:+.1f} MiB over the warm worker's "
        f"{before:.1f} MiB"
    )
    return [
        Figure(
            "upload: MiB/s, 1 GiB multipart via gunicorn",
            median(rates),
            "MiB/s",
            median(ceilings),
            ratio,
            f">= {TARGET_RATIO} ratio",
            ratio >= TARGET_RATIO,
        ),
        Figure(
            "upload peer: bare WSGI app, read + hash",
            median(peer_rates),
            "MiB/s",
            median(ceilings),
            peer_ratio,
        ),
        Figure(
            "upload: worker peak RSS growth",
            growth,
            "MiB",
            None,
            None,
            f"< {RSS_LIMIT_MIB} MiB",
            growth < RSS_LIMIT_MIB,
        ),
    ]
