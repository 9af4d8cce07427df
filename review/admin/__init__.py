"""Human review in the admin: the queue and its item pages, accountable owners, unattributed
decisions, review settings, policy publishing and oversight analytics.

Review state changes only through review.services (each step a ledger entry); the admin turns
buttons into service calls and records each one as a staff.AdminEvent. Ledgered rows
(ReviewAction, PolicySet, DecisionOwner) are read-only for everyone.
"""

from review.admin import decisions, policies, queue, records  # noqa: F401 (they register)
