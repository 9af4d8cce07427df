"""veridict-client: what an AI system imports to report its decisions to Veridict."""

from veridict_client.client import (
    BULK_MAX_RECORDS,
    ApiError,
    BulkRecordResult,
    DecisionAnswer,
    TransportError,
    VeridictClient,
    VeridictError,
)

__all__ = [
    "BULK_MAX_RECORDS",
    "ApiError",
    "BulkRecordResult",
    "DecisionAnswer",
    "TransportError",
    "VeridictClient",
    "VeridictError",
]
