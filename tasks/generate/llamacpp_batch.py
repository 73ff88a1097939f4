"""Batched decoding for llama.cpp: up to `slots` sequences share every forward pass (one multi-sequence llama_decode).

On CPU a 135M model decodes one sequence below what the cores can do (each step is small matrix-vector work);
decoding 8 sequences per step raised SmolLM2's throughput 1.33x, 3.40x and 3.8x in three runs on a shared 2-core
CPU against one `create_completion` at a time, same prompts and max_tokens (tests/bench/bench_llamacpp_batch.py).
Samples are continuous-batched: a slot is refilled with the next sample the step after its sequence ends. Each
sample has its own sampler chain seeded with (seed + index), the chain `create_completion` builds by default (top-k
40, typical 1, top-p, min-p 0.05, temperature), so a sample does not depend on its neighbours' sampling (its logits
may differ in the last bits from a one-sequence pass, as batched matrix products round differently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class Job:
    """One sample to decode: its prompt tokens and sampling settings; `key` is the caller's."""

    key: object
    prompt: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: tuple[str, ...] = ()
    tokens: list[int] = field(default_factory=list)


def _sampler(job: Job):
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if job.temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    for sampler in (llama_cpp.llama_sampler_init_top_k(40), llama_cpp.llama_sampler_init_typical(1.0, 1),
                    llama_cpp.llama_sampler_init_top_p(job.top_p, 1), llama_cpp.llama_sampler_init_min_p(0.05, 1),
                    llama_cpp.llama_sampler_init_temp(job.temperature),
                    llama_cpp.llama_sampler_init_dist(job.seed & 0xFFFFFFFF)):
        llama_cpp.llama_sampler_chain_add(chain, sampler)
    return chain


class BatchDecoder:
    """A llama.cpp context of `slots` sequences of `n_ctx` tokens each, over a loaded `Llama`'s model."""

    def __init__(self, llm, slots: int, n_ctx: int, n_threads: int):
        import llama_cpp

        self.llm, self.slots, self.n_ctx = llm, slots, n_ctx
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max = n_ctx * slots, slots
        params.n_batch = params.n_ubatch = max(512, n_ctx) + slots  # a whole prompt and every slot's next token
        params.n_threads = params.n_threads_batch = n_threads
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a batched context")
        self.batch = llama_cpp.llama_batch_init(params.n_batch, 0, slots)
        self.n_batch = params.n_batch
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)

    def run(self, jobs: Iterator[Job]) -> Iterator[tuple[Job, str, str]]:
        """Decode `jobs` (pulled as slots free up), yielding (job, text, finish_reason) as each one ends."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.ctx)
        llama_cpp.llama_memory_clear(memory, True)
        running: dict[int, tuple[Job, object, int]] = {}  # slot -> (job, sampler, index of its logits in the batch)
        held: Job | None = None  # pulled, but its prompt did not fit in this step's batch
        exhausted = False
        try:
            while running or held is not None or not exhausted:
                size, admitted = 0, {}
                for slot in [s for s in range(self.slots) if s not in running]:
                    job, held = held, None
                    if job is None and not exhausted:
                        job = next(jobs, None)
                        exhausted = job is None
                    if job is None:
                        break
                    if len(job.prompt) >= self.n_ctx:
                        yield job, "", "length"  # no room left to answer in
                        continue
                    if size + len(job.prompt) + self.slots > self.n_batch:
                        held = job  # next step (room is kept for the running sequences' tokens)
                        break
                    llama_cpp.llama_memory_seq_rm(memory, slot, -1, -1)
                    for position, token in enumerate(job.prompt):
                        size = self._add(size, token, position, slot, position == len(job.prompt) - 1)
                    admitted[slot] = (job, _sampler(job), size - 1)
                for slot, (job, sampler, _) in running.items():
                    size = self._add(size, job.tokens[-1], len(job.prompt) + len(job.tokens) - 1, slot, True)
                    running[slot] = (job, sampler, size - 1)
                running.update(admitted)
                if not size:
                    continue
                self.batch.n_tokens = size
                if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
                    raise RuntimeError("llama_decode failed (context full?)")
                for slot, (job, sampler, index) in list(running.items()):
                    token = llama_cpp.llama_sampler_sample(sampler, self.ctx, index)
                    ended = self._ended(job, token)
                    if ended is not None:
                        llama_cpp.llama_sampler_free(sampler)
                        del running[slot]
                        yield job, *ended
        finally:
            for _, sampler, _ in running.values():
                llama_cpp.llama_sampler_free(sampler)

    def _add(self, size: int, token: int, position: int, slot: int, logits: bool) -> int:
        b = self.batch
        b.token[size], b.pos[size], b.n_seq_id[size], b.logits[size] = token, position, 1, logits
        b.seq_id[size][0] = slot
        return size + 1

    def _ended(self, job: Job, token: int) -> tuple[str, str] | None:
        """(text, finish_reason) if `token` ends the job, else None (the token is kept)."""
        import llama_cpp

        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            return self._text(job), "stop"
        job.tokens.append(token)
        if job.stop:  # (the text so far is decoded per step only when a stop string may be in it)
            text = self._text(job)
            cut = min((text.find(s) for s in job.stop if s and s in text), default=-1)
            if cut >= 0:
                return text[:cut], "stop"
        if len(job.tokens) >= job.max_tokens or len(job.prompt) + len(job.tokens) >= self.n_ctx:
            return self._text(job), "length"
        return None

    def _text(self, job: Job) -> str:
        return self.llm.detokenize(job.tokens).decode("utf-8", errors="ignore")

    def close(self) -> None:
        import llama_cpp

        if getattr(self, "ctx", None):
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
