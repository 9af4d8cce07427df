"""VeridictClient: the ingestion API of Veridict for AI systems, with safe retries."""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypedDict

import requests
from urllib3.exceptions import NewConnectionError

BULK_MAX_RECORDS = 10_000
# Under the server's default body limit (32 MiB), so that a chunk is never refused for its size.
BULK_MAX_BYTES = 16 * 1024 * 1024
NDJSON = "application/x-ndjson"
# A Retry-After longer than this is taken as this: a misconfigured proxy must not park a client.
MAX_RETRY_AFTER = 600.0


class DecisionAnswer(TypedDict):
    id: str
    leaf_hash: str
    received_at: str
    set: str
    receipt_url: str
    subject_url: str


class BulkRecordResult(TypedDict, total=False):
    index: int
    status: int
    id: str
    leaf_hash: str
    error: dict[str, Any]


class VeridictError(Exception):
    """Anything that kept a call from getting its answer."""


class TransportError(VeridictError):
    """No answer from the server, after every retry allowed."""


class ApiError(VeridictError):
    """The server answered with an error status: a 4xx at once, a 429 or 5xx after retries."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code: str = error.get("code", "error")
        self.fields: dict[str, Any] = error.get("fields", {})
        self.body = body
        super().__init__(f"{status} {self.code}: {error.get('message', body)}")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON: convert it before sending")


def _dumps(value: Any) -> str:
    return json.dumps(
        value, default=_json_default, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the server asked to wait: Retry-After as seconds or as an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server: no connection was made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    reason = getattr(exc.args[0], "reason", exc.args[0])  # urllib3's MaxRetryError wraps it
    return isinstance(reason, NewConnectionError)


class VeridictClient:
    """A client for one AI system's API key.

    Retries connection errors, 429 (waiting as Retry-After says) and 5xx answers with
    exponential backoff and jitter, never a 4xx. A retried write is safe: a decision is sent
    with one idempotency key on every try, a bulk chunk's records carry their client decision
    ids, a document is known by its digest. Outcomes have no idempotency key, so they are only
    retried when the request surely did not reach the server (no connection, or a 429).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._session = session or requests.Session()
        self._session.headers["Authorization"] = f"Api-Key {api_key}"
        self._session.headers["Accept"] = "application/json"

    def __enter__(self) -> VeridictClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # --- writes ----------------------------------------------------------------------------------

    def decision_record(
        self, decision: Mapping[str, Any], idempotency_key: str | None = None
    ) -> DecisionAnswer:
        """Records one decision; the answer holds its `id`, `leaf_hash`, `set` and URLs.

        Without an idempotency key a new one is made; every retry sends the same, so a retry
        after a lost answer returns the first decision instead of making a second.
        """
        key = idempotency_key or str(uuid.uuid4())
        response = self._request(
            "POST",
            "/api/v1/decisions",
            data=_dumps(decision).encode(),
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )
        return response.json()  # type: ignore[no-any-return]

    def decisions_bulk(
        self, decisions: Iterable[Mapping[str, Any]], chunk_size: int = 1_000
    ) -> Iterator[BulkRecordResult]:
        """Sends decisions as NDJSON, `chunk_size` records (at most 10,000) per request, and
        yields each record's result in order, `index` counting from 0 over all of them.

        A record fails only itself (status 400 or 409 with `error`); each chunk is committed
        as a whole before its results arrive. Give records an `idempotency_key` of their own
        if their client decision ids may repeat.
        """
        if not 0 < chunk_size <= BULK_MAX_RECORDS:
            raise ValueError(f"chunk_size must be 1 to {BULK_MAX_RECORDS}")
        offset = 0
        lines: list[bytes] = []
        size = 0
        for decision in decisions:
            line = _dumps(decision).encode() + b"\n"
            if lines and (len(lines) == chunk_size or size + len(line) > BULK_MAX_BYTES):
                yield from self._bulk_send(lines, offset)
                offset += len(lines)
                lines, size = [], 0
            lines.append(line)
            size += len(line)
        if lines:
            yield from self._bulk_send(lines, offset)

    def _bulk_send(self, lines: list[bytes], offset: int) -> Iterator[BulkRecordResult]:
        response = self._request(
            "POST",
            "/api/v1/decisions/bulk",
            data=b"".join(lines),
            headers={"Content-Type": NDJSON},
        )
        for result in response.json()["results"]:
            result["index"] += offset
            yield result

    def outcome_record(
        self, decision_id: str, actual: Mapping[str, Any], observed_at: datetime | str
    ) -> dict[str, Any]:
        """Records the ground truth of a decision (`actual`: label and/or value) as its own
        entry; retried only when the request surely did not reach the server."""
        body = {"actual": actual, "observed_at": observed_at}
        response = self._request(
            "POST",
            f"/api/v1/decisions/{decision_id}/outcome",
            data=_dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            idempotent=False,
        )
        return response.json()  # type: ignore[no-any-return]

    def document_register(
        self,
        *,
        sha256: str,
        size: int | None = None,
        media_type: str | None = None,
        private: bool = False,
        decisions: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Registers a document by its SHA-256 alone, linked to the decisions it informed; the
        same digest registered again answers with the first registration."""
        body: dict[str, Any] = {"sha256": sha256, "private": private, "decisions": list(decisions)}
        if size is not None:
            body["size"] = size
        if media_type is not None:
            body["media_type"] = media_type
        response = self._request(
            "POST",
            "/api/v1/documents",
            data=_dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        return response.json()  # type: ignore[no-any-return]

    # --- reads -----------------------------------------------------------------------------------

    def receipt_get(self, entry_id: str) -> dict[str, Any]:
        """The entry's receipt (check it with `veridict-verify`); before sealing its proof,
        checkpoint and batch are null."""
        return self._request("GET", f"/api/v1/entries/{entry_id}/receipt").json()  # type: ignore[no-any-return]

    def receipt_download(self, entry_id: str, path: str | os.PathLike[str]) -> Path:
        """Writes the receipt to `path` as the server sent it; the file appears whole or not."""
        target = Path(path)
        response = self._request("GET", f"/api/v1/entries/{entry_id}/receipt", stream=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            with partial.open("wb") as handle:
                for block in response.iter_content(64 * 1024):
                    handle.write(block)
            partial.replace(target)
        finally:
            response.close()
            partial.unlink(missing_ok=True)
        return target

    # --- the retry loop --------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: a random wait in the upper half of the step."""
        step = min(self.max_backoff, self.backoff * 2**attempt)
        return random.uniform(step / 2, step)  # noqa: S311 - jitter, not a secret

    def _request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        stream: bool = False,
    ) -> requests.Response:
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._session.request(
                    method,
                    url,
                    data=data,
                    headers=dict(headers or {}),
                    timeout=self.timeout,
                    stream=stream,
                )
            except requests.RequestException as exc:
                if last or not (idempotent or _never_sent(exc)):
                    raise TransportError(f"{method} {path}: {exc}") from exc
                self._sleep(self._delay(attempt))
                continue
            status = response.status_code
            retryable = status == 429 or (idempotent and status >= 500)
            if retryable and not last:
                wait = _retry_after(response)
                response.close()
                self._sleep(wait if wait is not None else self._delay(attempt))
                continue
            if status >= 400:
                try:
                    body: Any = response.json()
                except ValueError:
                    body = response.text
                raise ApiError(status, body)
            return response
        raise AssertionError("unreachable")
