"""A generator that starts its backend on first use, so a build whose samples are all cached never loads a model."""

from __future__ import annotations

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.tasks.generate import make_generator


class LazyGenerator:
    """Stands in for the backend `config` names until something is generated."""

    def __init__(self, config: GenerationConfig):
        self.config = config
        self._generator = None

    def _get(self):
        if self._generator is None:
            self._generator = make_generator(self.config)
        return self._generator

    def __getattr__(self, name):
        return getattr(self._get(), name)

    def generate(self, requests):
        return self._get().generate(requests)

    def log_path(self) -> str | None:
        """Where the started backend logs (vLLM's engine), if it was started and keeps a log."""
        return getattr(self._generator, "log_path", None) if self._generator is not None else None

    def close(self):
        if self._generator is not None:
            self._generator.close()
