"""Stage 3, verification: answer extraction, the verifier cascade, the worker pool, the code sandbox, the LLM judge
and self-consistency votes."""
