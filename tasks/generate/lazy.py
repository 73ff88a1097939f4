"""Generators that start their backend on first use (a build whose samples are all cached never loads a model), and
one long-lived generator per model for the whole build, shared by sampling, PRM rollouts and the judges."""

from __future__ import annotations

import itertools

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.tasks.generate import make_generator
from cotforge.tasks.generate.base import stream_completions


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

    def stream(self, requests):
        """The backend's stream (or `generate` in batches), started only once there is a request to send: a build
        whose shards are all written never loads a model."""
        source = iter(requests)
        first = next(source, None)
        if first is None:
            return
        yield from stream_completions(self._get(), itertools.chain([first], source), self.config.batch_requests)

    def generate(self, requests):
        return self._get().generate(requests)

    def log_path(self) -> str | None:
        """Where the started backend logs (vLLM's engine), if it was started and keeps a log."""
        return getattr(self._generator, "log_path", None) if self._generator is not None else None

    @property
    def started(self):
        """The backend if it was started, else None."""
        return self._generator

    def close(self):
        if self._generator is not None:
            self._generator.close()
            self._generator = None


def engine_key(config: GenerationConfig) -> str:
    """What makes two generation configs one engine: the backend and its own section (model, engine settings).
    Sampling parameters travel with each request, so they never split an engine."""
    return f"{config.backend}:{getattr(config, config.backend).model_dump_json()}"


class SharedGenerators:
    """One lazy generator per engine for a whole build. Each user `claim`s the config it generates with up front and
    `release`s it when done; an engine is closed when its last user releases it (so a model no later stage needs is
    not kept loaded beside the next one), and everything left at `close`."""

    def __init__(self):
        self._generators: dict[str, LazyGenerator] = {}
        self._users: dict[str, int] = {}

    def claim(self, config: GenerationConfig) -> LazyGenerator:
        key = engine_key(config)
        self._users[key] = self._users.get(key, 0) + 1
        if key not in self._generators:
            self._generators[key] = LazyGenerator(config)
        return self._generators[key]

    def release(self, config: GenerationConfig) -> None:
        key = engine_key(config)
        self._users[key] -= 1
        if self._users[key] == 0:
            self._generators.pop(key).close()

    def close(self) -> None:
        for generator in self._generators.values():
            generator.close()
        self._generators.clear()
        self._users.clear()
