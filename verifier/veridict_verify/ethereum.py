"""Checks an Ethereum anchor against a JSON-RPC node the user chooses (stdlib only, no web3)."""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from veridict_verify.formats import FormatError, format_time, parse_time

# A block without its transactions' bodies is a few kilobytes per hundred transactions.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 10.0
_HASH = re.compile(r"0x[0-9a-f]{64}")
_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


class ChainError(Exception):
    """The anchor does not check against the chain; the message is the reason a person reads."""


class NodeError(ChainError):
    """The node could not be asked, or answered something that is not JSON-RPC."""


@dataclass(frozen=True)
class ChainAnchor:
    """What a receipt's ethereum anchor claims."""

    chain_id: int
    tx_hash: str
    block_number: int
    block_hash: str
    block_time: datetime

    @classmethod
    def parse(cls, anchor: dict[str, Any]) -> ChainAnchor:
        """Reads the claim's fields; ChainError names the field that is malformed."""
        chain_id, block_number = anchor.get("chain_id"), anchor.get("block_number")
        for name, value in (("chain_id", chain_id), ("block_number", block_number)):
            if type(value) is not int or value < 0:  # a JSON integer: not 4.0, not true
                raise ChainError(f"anchor {name} is not a whole number")
        for name in ("tx_hash", "block_hash"):
            value = anchor.get(name)
            if not isinstance(value, str) or not _HASH.fullmatch(value):
                raise ChainError(f"anchor {name} is not 0x and 64 lower-case hex digits")
        block_time = anchor.get("block_time")
        try:
            moment = parse_time(block_time if isinstance(block_time, str) else "")
        except FormatError as exc:
            raise ChainError(f"anchor block_time: {exc}") from exc
        return cls(
            chain_id=chain_id,  # type: ignore[arg-type]
            tx_hash=anchor["tx_hash"],
            block_number=block_number,  # type: ignore[arg-type]
            block_hash=anchor["block_hash"],
            block_time=moment,
        )

    def describe(self) -> str:
        return f"transaction {self.tx_hash} on chain {self.chain_id} in block {self.block_number}"


class RPCNode:
    """An Ethereum JSON-RPC node over HTTP(S)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"RPC URL {url!r} is not an http(s) URL")
        self.url = url
        self.timeout = timeout
        # Named without path, query or user part: a provider's URL often holds an API key.
        self.name = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._ids = itertools.count(1)
        self._chain_id: int | None = None

    def call(self, method: str, params: list[Any]) -> Any:
        """The `result` of one JSON-RPC call; NodeError says why there is none."""
        request_id = next(self._ids)
        request = urllib.request.Request(  # noqa: S310 -- the scheme is checked in __init__
            self.url,
            data=json.dumps(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            ).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise NodeError(
                f"the node at {self.name} answered HTTP {exc.code} to {method}"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts too
            reason = getattr(exc, "reason", exc)
            raise NodeError(f"the node at {self.name} did not answer {method}: {reason}") from exc
        if len(raw) > MAX_ANSWER_BYTES:
            raise NodeError(f"the node at {self.name} answered {method} with too many bytes")
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise NodeError(f"the node at {self.name} answered {method} with no JSON") from exc
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise NodeError(f"the node at {self.name} answered {method} with no JSON-RPC reply")
        if answer.get("error") is not None:
            error = answer["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise NodeError(f"the node at {self.name} refused {method}: {str(message)[:200]}")
        if "result" not in answer:
            raise NodeError(f"the node at {self.name} answered {method} with no result")
        return answer["result"]

    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = _quantity(self.call("eth_chainId", []), "eth_chainId", self)
        return self._chain_id


def _quantity(value: Any, what: str, node: RPCNode) -> int:
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise NodeError(f"the node at {node.name} gave {what} as {value!r}, not a hex quantity")
    return int(value, 16)


def _hash(value: Any, what: str, node: RPCNode) -> str:
    if not isinstance(value, str) or not _HASH.fullmatch(value.lower()):
        raise NodeError(f"the node at {node.name} gave {what} as {value!r}, not a 32-byte hash")
    return value.lower()


def _object(value: Any, what: str, node: RPCNode) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NodeError(f"the node at {node.name} answered {what} with {value!r}, not an object")
    return value


def chain_anchor_verify(claim: ChainAnchor, *, body: bytes, node: RPCNode) -> int:
    """Checks that the claimed transaction carries SHA-256(body) and sits in the claimed block of
    the claimed chain, as the node sees it; returns the confirmations (latest block − the
    anchor's block + 1). Raises ChainError naming the first thing that differs."""
    chain_id = node.chain_id()
    if chain_id != claim.chain_id:
        raise ChainError(
            f"the node at {node.name} serves chain {chain_id}, but the anchor is on chain "
            f"{claim.chain_id}: give --rpc-url of a node of that chain"
        )
    found = node.call("eth_getTransactionByHash", [claim.tx_hash])
    if found is None:
        raise ChainError(f"chain {claim.chain_id} has no transaction {claim.tx_hash}")
    transaction = _object(found, "eth_getTransactionByHash", node)
    if _hash(transaction.get("hash"), "the transaction hash", node) != claim.tx_hash:
        raise NodeError(f"the node at {node.name} answered with another transaction")
    data = transaction.get("input", transaction.get("data"))
    if not isinstance(data, str) or not _DATA.fullmatch(data):
        raise NodeError(f"the node at {node.name} gave the transaction's input as {data!r}")
    expected = "0x" + hashlib.sha256(body).hexdigest()
    if data.lower() != expected:
        raise ChainError(
            f"transaction {claim.tx_hash} carries {data.lower()[:66]}, not SHA-256 of the "
            f"anchored checkpoint ({expected})"
        )
    if "chainId" in transaction and transaction["chainId"] is not None:
        signed_for = _quantity(transaction["chainId"], "the transaction's chainId", node)
        if signed_for != claim.chain_id:
            raise ChainError(f"transaction {claim.tx_hash} is signed for chain {signed_for}")
    if transaction.get("blockHash") is None:
        raise ChainError(f"transaction {claim.tx_hash} is not mined yet (pending)")
    in_block = _hash(transaction.get("blockHash"), "the transaction's blockHash", node)
    in_number = _quantity(transaction.get("blockNumber"), "the transaction's blockNumber", node)
    if in_number != claim.block_number:
        raise ChainError(
            f"transaction {claim.tx_hash} is in block {in_number}, "
            f"not anchor block_number {claim.block_number}"
        )
    if in_block != claim.block_hash:
        raise ChainError(
            f"transaction {claim.tx_hash} is in block {in_block}, "
            f"not anchor block_hash {claim.block_hash}"
        )
    found = node.call("eth_getBlockByNumber", [hex(claim.block_number), False])
    if found is None:
        raise ChainError(
            f"the node at {node.name} has no block {claim.block_number}: is it synced?"
        )
    block = _object(found, "eth_getBlockByNumber", node)
    block_hash = _hash(block.get("hash"), "the block hash", node)
    if block_hash != claim.block_hash:
        raise ChainError(
            f"block {claim.block_number} of chain {claim.chain_id} is {block_hash}, "
            f"not anchor block_hash {claim.block_hash}"
        )
    listed = block.get("transactions")
    if not isinstance(listed, list):
        raise NodeError(f"the node at {node.name} gave block {claim.block_number} no transactions")
    # Hashes, as asked; a node that sends whole transactions anyway is understood too.
    hashes = {str(item.get("hash") if isinstance(item, dict) else item).lower() for item in listed}
    if claim.tx_hash not in hashes:
        raise ChainError(f"block {claim.block_number} does not list transaction {claim.tx_hash}")
    timestamp = _quantity(block.get("timestamp"), "the block timestamp", node)
    if claim.block_time.microsecond or int(claim.block_time.timestamp()) != timestamp:
        try:
            made_at = format_time(datetime.fromtimestamp(timestamp, tz=UTC))
        except (OverflowError, OSError, ValueError):  # no calendar date: say the number
            made_at = f"Unix time {timestamp}"
        raise ChainError(
            f"block {claim.block_number} was made at {made_at}, "
            f"not anchor block_time {format_time(claim.block_time)}"
        )
    latest = _quantity(node.call("eth_blockNumber", []), "eth_blockNumber", node)
    if latest < claim.block_number:
        raise NodeError(
            f"the node at {node.name} says the latest block is {latest}, "
            f"before block {claim.block_number} it has just served"
        )
    return latest - claim.block_number + 1
