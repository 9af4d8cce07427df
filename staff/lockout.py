"""Admin login lockout per username, whatever the address: django-axes' handler plus one count.

Axes locks a username at one address (settings: AXES_LOCKOUT_PARAMETERS), so that behind a shared
proxy one person's typos lock out only themselves; alone, that lets an attacker guess one
username's password from as many addresses as they have, a few guesses each. This handler also
counts the username's failures from every address within the cool-off, and locks the username
everywhere at LOGIN_USERNAME_FAILURE_LIMIT. An administrator unlocks it by deleting its access
attempts (admin: Axes › Access attempts, or `manage.py axes_reset_username <name>`).
"""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest


def username_failures(*, username: str) -> int:
    """Refused logins of this username from every address still within the cool-off (axes
    deletes older attempts before it counts)."""
    failures = AccessAttempt.objects.filter(username=username).aggregate(
        total=Sum("failures_since_start")
    )["total"]
    return failures or 0


class UsernameLimitHandler(AxesDatabaseHandler):
    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        # Axes locks when this number reaches the per-address limit, in is_locked and after each
        # failure (which also sends user_locked_out, recorded as an AdminEvent). The username's
        # total counts in the same unit, scaled so that it reaches that limit exactly when the
        # total reaches LOGIN_USERNAME_FAILURE_LIMIT: then every axes path locks for both.
        per_address = super().get_failures(request, credentials)
        username = get_client_username(request, credentials)
        if not username:
            return per_address
        limit = get_failure_limit(request, credentials)
        scaled = (
            username_failures(username=username) * limit // settings.LOGIN_USERNAME_FAILURE_LIMIT
        )
        return max(per_address, scaled)
