"""Outside anchor backends (settings ANCHOR_BACKENDS): what each one is and how it anchors."""

from __future__ import annotations

import abc
import base64
import functools
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeGuard
from urllib.parse import urlsplit

import requests
from cryptography import x509
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder
from veridict_verify.formats import format_time
from veridict_verify.timestamp import TimestampError, timestamp_decode, timestamp_verify

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from timestamping.models import Anchor

BUILTIN = "builtin"
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# An RFC 3161 answer is a few kilobytes; more is not a time-stamp.
MAX_REPLY_BYTES = 64 * 1024
REPLY_MEDIA_TYPE = "application/timestamp-reply"
QUERY_MEDIA_TYPE = "application/timestamp-query"


class AnchorFailed(Exception):
    """One try to anchor failed; the message is the reason the batch API and receipts show.

    `detail` is state the next try needs (e.g. a transaction already sent), kept on the job.
    """

    def __init__(self, reason: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.detail = detail or {}


class AnchorReorganised(AnchorFailed):
    """The stored anchor's block is no longer the chain's block at its height: the evidence is
    gone, and the checkpoint must be anchored again."""


@dataclass(frozen=True)
class Evidence:
    """What a successful try hands back, stored once as an Anchor row."""

    type: str
    tsa: str = ""
    tsr: bytes = b""
    chain_id: int | None = None
    tx_hash: str = ""
    block_number: int | None = None
    block_hash: str = ""
    block_time: datetime | None = None
    # False while the evidence can still be undone (a chain reorganisation): the job stays
    # "anchored" and the sweeper asks the backend again (AnchorBackend.confirm).
    final: bool = True
    detail: dict[str, Any] = field(default_factory=dict)


class AnchorBackend(abc.ABC):
    """One configured anchor source. Subclasses set `type` and implement `anchor`."""

    type: ClassVar[str]
    # Keys a configuration entry of this type may hold besides the common ones.
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, name: str, interval: float, retired: bool) -> None:
        self.name = name
        self.interval = interval
        # A retired backend anchors nothing new, but receipts keep showing its anchors.
        self.retired = retired

    @property
    def lease_seconds(self) -> float:
        """How long a try may run before another worker may take the job over."""
        return 60.0

    @abc.abstractmethod
    def anchor(self, *, body: bytes, detail: dict[str, Any]) -> Evidence:
        """Anchors a checkpoint body; raises AnchorFailed with the reason."""

    def confirm(self, *, detail: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """For evidence that was not final: (final now?, updated detail)."""
        return True, detail

    @classmethod
    @abc.abstractmethod
    def from_config(cls, entry: dict[str, Any], common: dict[str, Any]) -> AnchorBackend:
        """The backend one VERIDICT_ANCHORS entry describes; ImproperlyConfigured if it is wrong."""


class RFC3161Backend(AnchorBackend):
    """A remote RFC 3161 TSA, asked over HTTP; its answers are checked against pinned roots."""

    type = "rfc3161"
    options = frozenset({"url", "roots", "timeout"})

    def __init__(
        self,
        *,
        name: str,
        interval: float,
        retired: bool,
        url: str,
        roots: list[Path],
        timeout: float,
    ) -> None:
        super().__init__(name=name, interval=interval, retired=retired)
        self.url = url
        self.roots = roots
        self.timeout = timeout

    @property
    def lease_seconds(self) -> float:
        return self.timeout + 30.0

    @classmethod
    def from_config(cls, entry: dict[str, Any], common: dict[str, Any]) -> RFC3161Backend:
        where = f"anchor backend {common['name']!r}"
        url = entry.get("url")
        if not isinstance(url, str):
            raise ImproperlyConfigured(f"{where}: url must be an http(s) URL, not {url!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImproperlyConfigured(f"{where}: url must be an http(s) URL, not {url!r}")
        roots = entry.get("roots")
        if not isinstance(roots, list) or not roots or not all(isinstance(r, str) for r in roots):
            raise ImproperlyConfigured(
                f"{where}: roots must be a list of PEM files of the CA certificates that the "
                "TSA's certificate chains to"
            )
        paths = [Path(root) for root in roots]
        for path in paths:
            _roots_load(path, where)
        timeout = entry.get("timeout", settings.ANCHOR_HTTP_TIMEOUT_SECONDS)
        if not _positive_number(timeout):
            raise ImproperlyConfigured(f"{where}: timeout must be a positive number of seconds")
        return cls(url=url, roots=paths, timeout=float(timeout), **common)

    def anchor(self, *, body: bytes, detail: dict[str, Any]) -> Evidence:
        request = (
            TimestampRequestBuilder()
            .data(body)
            .hash_algorithm(HashAlgorithm.SHA256)
            .cert_request(cert_request=True)
            .nonce(nonce=True)
            .build()
        )
        reply = self._post(request.as_bytes())
        # Roots are read at each try, so replacing a root file needs no restart.
        roots_pem = b"".join(
            _roots_load(path, f"anchor backend {self.name!r}") for path in self.roots
        )
        try:
            timestamp_verify(reply, message=body, ca_pem=roots_pem)
        except TimestampError as exc:
            raise AnchorFailed(
                f"{self.url} answered a time-stamp that does not check: {exc}"
            ) from exc
        try:
            nonce = timestamp_decode(reply).tst_info.nonce
        except TimestampError:
            nonce = None
        if nonce != request.nonce:
            # A replayed or misrouted answer: signed, but not for this request.
            raise AnchorFailed(f"{self.url} answered a time-stamp without this request's nonce")
        return Evidence(type=self.type, tsa=self.url, tsr=reply)

    def _post(self, query: bytes) -> bytes:
        deadline = time.monotonic() + self.timeout
        try:
            with requests.post(
                self.url,
                data=query,
                headers={"Content-Type": QUERY_MEDIA_TYPE, "Accept": REPLY_MEDIA_TYPE},
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                if response.status_code != 200:
                    raise AnchorFailed(f"{self.url} answered HTTP {response.status_code}")
                media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
                if media_type.lower() != REPLY_MEDIA_TYPE:
                    raise AnchorFailed(
                        f"{self.url} answered {media_type or 'no media type'}, "
                        f"not {REPLY_MEDIA_TYPE}"
                    )
                reply = bytearray()
                # requests' timeout bounds each read, not the whole answer: a TSA that trickles
                # bytes must not hold the worker past the job's lease.
                for chunk in response.iter_content(chunk_size=8192):
                    reply += chunk
                    if len(reply) > MAX_REPLY_BYTES:
                        raise AnchorFailed(f"{self.url} answered more than {MAX_REPLY_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise AnchorFailed(
                            f"{self.url} took more than {self.timeout:g} s to answer"
                        )
        except requests.RequestException as exc:
            raise AnchorFailed(f"{self.url} did not answer: {_reason(exc)}") from exc
        return bytes(reply)


def _reason(exc: requests.RequestException) -> str:
    # requests nests the socket error several levels deep; its innermost text says what happened.
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    text = str(cause) or type(cause).__name__
    return f"{type(exc).__name__} ({text})"


def _roots_load(path: Path, where: str) -> bytes:
    try:
        pem = path.read_bytes()
        x509.load_pem_x509_certificates(pem)
    except OSError as exc:
        raise ImproperlyConfigured(f"{where}: cannot read root {path} ({exc.strerror})") from exc
    except ValueError as exc:
        raise ImproperlyConfigured(f"{where}: root {path} is not a PEM certificate") from exc
    return pem


def _positive_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


# --- Ethereum -----------------------------------------------------------------------------------

ETH_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Chain ids go into receipts as JSON numbers: I-JSON keeps them exact only up to 2^53.
MAX_CHAIN_ID = 2**53
# One try waits at most this long for its transaction to be mined, so that it ends well within
# the anchoring task's time limit (timestamping.tasks); a later try looks for it again.
MAX_WAIT_SECONDS = 60.0
DEFAULT_WAIT_SECONDS = 30.0
DEFAULT_CONFIRMATIONS = 12
POLL_SECONDS = 0.5
# A replacement of a pending transaction must raise both fees by 10 % (geth, Nethermind, ganache).
FEE_BUMP = 1.125


class EthereumBackend(AnchorBackend):
    """An Ethereum-compatible chain over JSON-RPC (web3.py): a zero-value transaction from a
    configured account whose data is SHA-256 of the checkpoint body.

    The evidence is stored once the transaction is mined (the job is then "anchored"); the
    sweeper counts confirmations (`confirm`) until the configured number makes it "final".
    The account's private key is read from an environment variable or a file at each try and
    is never stored, logged or put into a reason.
    """

    type = "ethereum"
    options = frozenset(
        {"rpc_url", "chain_id", "key_env", "key_file", "to", "confirmations", "timeout", "wait"}
    )

    def __init__(
        self,
        *,
        name: str,
        interval: float,
        retired: bool,
        rpc_url: str,
        chain_id: int,
        key_env: str,
        key_file: Path | None,
        to: str,
        confirmations: int,
        timeout: float,
        wait: float,
    ) -> None:
        super().__init__(name=name, interval=interval, retired=retired)
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.key_env = key_env
        self.key_file = key_file
        self.to = to
        self.confirmations = confirmations
        self.timeout = timeout
        self.wait = wait

    @property
    def lease_seconds(self) -> float:
        # A try makes a few RPC calls before and after waiting for the transaction to be mined.
        return self.wait + 6 * self.timeout + 30.0

    @property
    def node(self) -> str:
        """The node as reasons name it: scheme, host and port only, since the path or query of a
        provider's URL often holds an API key, and reasons are public (receipts)."""
        parts = urlsplit(self.rpc_url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    @classmethod
    def from_config(cls, entry: dict[str, Any], common: dict[str, Any]) -> EthereumBackend:
        where = f"anchor backend {common['name']!r}"
        rpc_url = entry.get("rpc_url")
        parts = urlsplit(rpc_url) if isinstance(rpc_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImproperlyConfigured(
                f"{where}: rpc_url must be the http(s) URL of a JSON-RPC node, not {rpc_url!r}"
            )
        chain_id = entry.get("chain_id")
        if not _whole_number(chain_id) or not 0 < chain_id < MAX_CHAIN_ID:
            raise ImproperlyConfigured(
                f"{where}: chain_id must be the chain's id, a whole number from 1 to 2^53 - 1, "
                f"not {chain_id!r}"
            )
        key_env, key_file = entry.get("key_env"), entry.get("key_file")
        if (key_env is None) == (key_file is None):
            raise ImproperlyConfigured(
                f"{where}: give the account's private key as exactly one of key_env (the name of "
                "an environment variable) or key_file (a file), never the key itself"
            )
        if key_env is not None and (
            not isinstance(key_env, str) or not ENV_NAME.fullmatch(key_env)
        ):
            raise ImproperlyConfigured(
                f"{where}: key_env must name an environment variable, not {key_env!r}"
            )
        if key_file is not None and (not isinstance(key_file, str) or not key_file):
            raise ImproperlyConfigured(f"{where}: key_file must be a file path")
        to = entry.get("to", "")
        if to != "" and not (isinstance(to, str) and _address_valid(to)):
            raise ImproperlyConfigured(
                f"{where}: to must be an address, 0x and 40 hex digits (with a valid EIP-55 "
                f"checksum if it has capitals), not {to!r}"
            )
        confirmations = entry.get("confirmations", DEFAULT_CONFIRMATIONS)
        if not _whole_number(confirmations) or confirmations < 1:
            raise ImproperlyConfigured(
                f"{where}: confirmations must be a whole number of blocks, at least 1"
            )
        timeout = entry.get("timeout", settings.ANCHOR_HTTP_TIMEOUT_SECONDS)
        if not _positive_number(timeout):
            raise ImproperlyConfigured(f"{where}: timeout must be a positive number of seconds")
        wait = entry.get("wait", DEFAULT_WAIT_SECONDS)
        if not _positive_number(wait) or wait > MAX_WAIT_SECONDS:
            raise ImproperlyConfigured(
                f"{where}: wait must be a positive number of seconds, at most {MAX_WAIT_SECONDS:g}"
            )
        return cls(
            rpc_url=rpc_url,  # type: ignore[arg-type]
            chain_id=chain_id,
            key_env=key_env or "",
            key_file=Path(key_file) if key_file is not None else None,
            to=to,
            confirmations=confirmations,
            timeout=float(timeout),
            wait=float(wait),
            **common,
        )

    # --- one try ---

    def anchor(self, *, body: bytes, detail: dict[str, Any]) -> Evidence:
        """Sends the transaction, or looks for the one an earlier try sent (`detail`), and waits
        up to `wait` seconds for it to be mined."""
        progress: dict[str, Any] = {
            name: detail[name] for name in ("nonce", "sent", "fees") if name in detail
        }
        try:
            return self._anchor(hashlib.sha256(body).digest(), progress)
        except AnchorFailed:
            raise
        except Exception as exc:  # the node's and web3's errors are many
            # Converted here so that no traceback (whose frames may hold the key) is logged.
            raise AnchorFailed(self._reason(exc), detail=progress) from None

    def _anchor(self, digest: bytes, progress: dict[str, Any]) -> Evidence:
        w3 = self._web3()
        self._chain_check(w3)
        account = self._account()
        sent: list[str] = list(progress.get("sent", []))
        nonce = progress.get("nonce")
        # Read before the receipts: a nonce used up by then, with none of our transactions
        # mined, was used by another transaction of this account.
        used = w3.eth.get_transaction_count(account.address, "latest")
        receipt = self._receipt_first(w3, sent)
        if receipt is not None:
            return self._evidence(w3, receipt, progress)
        fees_before = progress.get("fees")
        if not isinstance(nonce, int) or used > nonce:
            nonce = w3.eth.get_transaction_count(account.address, "pending")
            sent, fees_before = [], None
        tx_hash, fees = self._send(w3, account, digest, nonce, fees_before, sent, progress)
        progress.update(nonce=nonce, sent=[*sent, tx_hash], fees=fees)
        receipt = self._receipt_wait(w3, progress["sent"])
        if receipt is None:
            raise AnchorFailed(
                f"transaction {tx_hash} was sent to {self.node} but not mined within "
                f"{self.wait:g} s; the next try looks for it again",
                detail=progress,
            )
        return self._evidence(w3, receipt, progress)

    def _send(
        self,
        w3: Web3,
        account: LocalAccount,
        digest: bytes,
        nonce: int,
        fees_before: dict[str, int] | None,
        sent: list[str],
        progress: dict[str, Any],
    ) -> tuple[str, dict[str, int]]:
        """Signs and sends the transaction with this nonce. A resend (the earlier one is still
        not mined, or was dropped) replaces it: same nonce, fees raised, so only one of them can
        ever be mined."""
        to = w3.to_checksum_address(self.to or account.address)
        transaction: dict[str, Any] = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": to,
            "value": 0,
            "data": digest,
        }
        try:
            transaction["gas"] = w3.eth.estimate_gas(
                {"from": account.address, "to": to, "value": 0, "data": digest}  # type: ignore[typeddict-item]
            )
        except Exception as exc:
            # Mostly an account without funds: the reason names the address to fund.
            raise AnchorFailed(
                f"cannot send from account {account.address}: {self._reason(exc)}",
                detail=progress,
            ) from None
        fees = self._fees(w3, fees_before)
        signed = account.sign_transaction({**transaction, **fees})
        tx_hash = _hex(signed.hash)
        try:
            w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            # The node may have taken it before the error: the next try looks for it too.
            raise AnchorFailed(
                f"transaction {tx_hash} from account {account.address} was not taken: "
                f"{self._reason(exc)}",
                detail={**progress, "nonce": nonce, "sent": [*sent, tx_hash], "fees": fees},
            ) from None
        return tx_hash, fees

    def _fees(self, w3: Web3, before: dict[str, int] | None) -> dict[str, int]:
        latest = w3.eth.get_block("latest")
        base_fee = latest.get("baseFeePerGas")
        if base_fee is None:  # a chain without EIP-1559
            fees = {"gasPrice": int(w3.eth.gas_price)}
        else:
            priority = int(w3.eth.max_priority_fee)
            # Twice the base fee keeps the transaction includable through six full blocks.
            fees = {"maxFeePerGas": 2 * int(base_fee) + priority, "maxPriorityFeePerGas": priority}
        if before and set(before) == set(fees):
            fees = {
                name: max(fee, math.ceil(before[name] * FEE_BUMP)) for name, fee in fees.items()
            }
        return fees

    def _receipt_first(self, w3: Web3, sent: list[str]) -> Any:
        from web3.exceptions import TransactionNotFound

        for tx_hash in sent:
            try:
                return w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                continue
        return None

    def _receipt_wait(self, w3: Web3, sent: list[str]) -> Any:
        deadline = time.monotonic() + self.wait
        while True:
            receipt = self._receipt_first(w3, sent)
            if receipt is not None or time.monotonic() >= deadline:
                return receipt
            time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0)))

    def _evidence(self, w3: Web3, receipt: Any, progress: dict[str, Any]) -> Evidence:
        block = w3.eth.get_block(receipt["blockHash"])
        confirmations = int(w3.eth.block_number) - int(receipt["blockNumber"]) + 1
        tx_hash, block_hash = _hex(receipt["transactionHash"]), _hex(receipt["blockHash"])
        return Evidence(
            type=self.type,
            chain_id=self.chain_id,
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            block_hash=block_hash,
            block_time=datetime.fromtimestamp(int(block["timestamp"]), tz=UTC),
            final=confirmations >= self.confirmations,
            detail={
                **progress,
                "tx_hash": tx_hash,
                "block_number": int(receipt["blockNumber"]),
                "block_hash": block_hash,
                "confirmations": confirmations,
                "confirmations_required": self.confirmations,
            },
        )

    # --- confirmations ---

    def confirm(self, *, detail: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Counts the confirmations of the mined transaction; final once they reach the
        configured number. AnchorReorganised when the block the stored anchor names is no
        longer the chain's block at that height (a reorganisation dropped it)."""
        try:
            return self._confirm(detail)
        except AnchorFailed:
            raise
        except Exception as exc:
            raise AnchorFailed(self._reason(exc)) from None

    def _confirm(self, detail: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        from web3.exceptions import BlockNotFound

        w3 = self._web3()
        self._chain_check(w3)
        stored_block = detail.get("block_hash")
        receipt = self._receipt_first(w3, [detail["tx_hash"]])
        latest = int(w3.eth.block_number)
        detail = {**detail, "confirmations_required": self.confirmations}
        if receipt is None or _hex(receipt["blockHash"]) != stored_block:
            # The anchor row records the block the transaction was mined in; it is evidence
            # only while that block is the chain's block at its height.
            where = f"in block {_hex(receipt['blockHash'])}" if receipt else "not in any block"
            try:
                canonical = _hex(w3.eth.get_block(int(detail["block_number"]))["hash"])
            except BlockNotFound:
                canonical = "none (the chain is shorter now)"
            text = (
                f"transaction {detail['tx_hash']} is no longer in block {stored_block} that "
                f"the anchor records, it is {where}"
            )
            if canonical != stored_block:
                raise AnchorReorganised(
                    f"a chain reorganisation: {text}; the chain's block "
                    f"{detail['block_number']} is {canonical}",
                    detail={**detail, "confirmations": 0},
                )
            # The block is still the chain's, yet the node does not place the transaction in
            # it: a node out of step (still indexing, or one of several behind a balancer).
            # Nothing is decided on that; the next sweep asks again.
            raise AnchorFailed(
                f"{self.node} answers inconsistently: {text}, though block {stored_block} is "
                "still in the chain",
                detail={**detail, "confirmations": 0},
            )
        detail["confirmations"] = latest - int(receipt["blockNumber"]) + 1
        return detail["confirmations"] >= self.confirmations, detail

    # --- the node and the account ---

    def _web3(self) -> Web3:
        # Imported here: web3 takes over a second to import, and only workers that anchor to a
        # chain need it, not every web process that serves receipts.
        from web3 import Web3

        return Web3(
            Web3.HTTPProvider(
                self.rpc_url,
                request_kwargs={"timeout": self.timeout},
                # A try is bounded; the sweeper, not web3, retries a node that is down.
                exception_retry_configuration=None,
            )
        )

    def _chain_check(self, w3: Web3) -> None:
        chain_id = int(w3.eth.chain_id)
        if chain_id != self.chain_id:
            raise AnchorFailed(
                f"{self.node} serves chain {chain_id}, not the configured chain_id {self.chain_id}"
            )

    def _account(self) -> LocalAccount:
        from eth_account import Account

        if self.key_file is not None:
            source = f"the key file {self.key_file}"
            try:
                key_text = self.key_file.read_text()
            except OSError as exc:
                raise AnchorFailed(f"cannot read {source} ({exc.strerror})") from None
        else:
            source = f"the environment variable {self.key_env}"
            key_text = os.environ.get(self.key_env, "")
            if not key_text:
                raise AnchorFailed(f"{source}, which should hold the account key, is not set")
        try:
            return Account.from_key(key_text.strip())
        except Exception:  # its message could quote the key
            raise AnchorFailed(
                f"{source} does not hold a private key (64 hex digits, with or without 0x)"
            ) from None

    def _reason(self, exc: BaseException) -> str:
        error = getattr(exc, "rpc_response", None) or {}
        if isinstance(error.get("error"), dict) and error["error"].get("message"):
            # A JSON-RPC error: the node's own words say it best.
            text = f"the node answered: {error['error']['message']}"
        else:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        # requests quotes the URL it failed to reach: keep its path, query and user part out.
        parts = urlsplit(self.rpc_url)
        text = text.replace(self.rpc_url, self.node)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        if tail not in ("", "/"):
            text = text.replace(tail, "/…")
        if "@" in parts.netloc:
            text = text.replace(parts.netloc, parts.netloc.rpartition("@")[2])
        return f"{self.node}: {text}"


def _hex(value: Any) -> str:
    """A hash from web3 (HexBytes) as receipts write it: 0x and lower-case hex."""
    if isinstance(value, str):
        return "0x" + value.lower().removeprefix("0x")
    return "0x" + bytes(value).hex()


def _whole_number(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _address_valid(address: str) -> bool:
    if not ETH_ADDRESS.fullmatch(address):
        return False
    digits = address[2:]
    if digits == digits.lower() or digits == digits.upper():
        return True
    from eth_utils import is_checksum_address

    return bool(is_checksum_address(address))


# Backend types by the name configurations use.
TYPES: dict[str, type[AnchorBackend]] = {
    RFC3161Backend.type: RFC3161Backend,
    EthereumBackend.type: EthereumBackend,
}
COMMON_KEYS = frozenset({"name", "type", "interval", "retired"})


def backends_parse(config: Any) -> dict[str, AnchorBackend]:
    """Checks a configuration list and builds its backends, in order; ImproperlyConfigured names
    the entry and the field that is wrong."""
    if not isinstance(config, list):
        raise ImproperlyConfigured("VERIDICT_ANCHORS must be a JSON list of backend objects")
    backends: dict[str, AnchorBackend] = {}
    for position, entry in enumerate(config):
        where = f"VERIDICT_ANCHORS[{position}]"
        if not isinstance(entry, dict):
            raise ImproperlyConfigured(f"{where} is not an object")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name) or name == BUILTIN:
            raise ImproperlyConfigured(
                f"{where}.name must be a short lower-case name other than {BUILTIN!r}, not {name!r}"
            )
        if name in backends:
            raise ImproperlyConfigured(f"{where}.name {name!r} is used twice")
        backend_class = TYPES.get(entry.get("type"))  # type: ignore[arg-type]
        if backend_class is None:
            raise ImproperlyConfigured(
                f"{where}.type must be one of {sorted(TYPES)}, not {entry.get('type')!r}"
            )
        unknown = set(entry) - COMMON_KEYS - backend_class.options
        if unknown:
            raise ImproperlyConfigured(f"{where} has unknown fields {sorted(unknown)}")
        interval = entry.get("interval")
        if not _positive_number(interval):
            raise ImproperlyConfigured(
                f"{where}.interval must be a positive number of seconds, not {interval!r}"
            )
        retired = entry.get("retired", False)
        if not isinstance(retired, bool):
            raise ImproperlyConfigured(f"{where}.retired must be true or false")
        common = {"name": name, "interval": float(interval), "retired": retired}
        backends[name] = backend_class.from_config(entry, common)
    return backends


@functools.lru_cache(maxsize=8)
def _backends_cached(config_text: str) -> dict[str, AnchorBackend]:
    return backends_parse(json.loads(config_text))


def backends_configured() -> dict[str, AnchorBackend]:
    """The configured outside backends by name, retired ones included."""
    # Keyed by the configuration's text, so that a changed setting (tests) is picked up.
    return _backends_cached(json.dumps(settings.ANCHOR_BACKENDS, sort_keys=True))


def backends_active() -> list[AnchorBackend]:
    return [backend for backend in backends_configured().values() if not backend.retired]


def anchor_receipt_fields(anchor: Anchor) -> dict[str, Any]:
    """The type-specific fields of an anchor in receipts (DESIGN.md), besides type, checkpoint
    and consistency."""
    if anchor.type == RFC3161Backend.type:
        return {"tsa": anchor.tsa, "tsr_b64": base64.b64encode(bytes(anchor.tsr)).decode()}
    if anchor.type == EthereumBackend.type:
        # Imported here, as Anchor is above: this module loads no models when it is imported.
        from timestamping.models import AnchorJob

        detail = (
            AnchorJob.objects.filter(backend=anchor.backend, batch_id=anchor.batch_id)
            .values_list("detail", flat=True)
            .first()
        ) or {}
        confirmations = detail.get("confirmations")
        return {
            "chain_id": anchor.chain_id,
            "tx_hash": anchor.tx_hash,
            "block_number": anchor.block_number,
            "block_hash": anchor.block_hash,
            "block_time": format_time(anchor.block_time) if anchor.block_time else None,
            # Informational: counted by this server at its last look (it stops counting once
            # final); the verifier counts them again from the user's own node.
            "confirmations": confirmations if isinstance(confirmations, int) else 0,
        }
    return {}
