"""What the review admin modules share: display helpers and query-string ids."""

from __future__ import annotations

import json
from typing import Any

from django.utils.html import format_html

from audit.admin import decision_label
from audit.models import Decision
from veridict.admin_links import admin_link


def id_param(value: str | None) -> int | None:
    """A query-string id, or None when it is missing or not a positive integer (a hand-edited
    URL gets the page without it, not a server error)."""
    if value is None or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if 0 < number < 2**63 else None


def json_block(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


def json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def decision_link(decision: Decision) -> str:
    return admin_link(decision, decision_label(decision))


def user_name(user: Any) -> str:
    return user.get_username() if user is not None else "-"
