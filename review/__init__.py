"""Human review and accountability: review queue, attributions, contests, policy guardrails."""
