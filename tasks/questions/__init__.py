"""Stage 1, questions: programmatic families, seed datasets (files or the Hub) and LLM-synthesised questions."""
