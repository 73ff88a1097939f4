"""Stage 5, process labels: Monte-Carlo step labels from rollouts, and the optional per-step LLM judge."""
