"""llama.cpp in-process with the real SmolLM2 GGUF: seeded samples, chat template, assistant-prefix continuation."""

import pytest

from cotforge.tasks.generate.base import GenerationRequest, SamplingParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama():
    from cotforge.tasks.generate.llamacpp import LlamaCppGenerator

    generator = LlamaCppGenerator(n_ctx=512, n_threads=2)
    yield generator
    generator.close()


def _request(rid="q", n=2, seed=5, prefix="", max_tokens=12, logprobs=None):
    messages = ({"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2 + 3?"})
    return GenerationRequest(rid, messages, n, seed, SamplingParams(temperature=0.9, max_tokens=max_tokens,
                                                                    logprobs=logprobs), assistant_prefix=prefix)


def test_samples_are_reproducible_from_the_seed(llama):
    first = llama.generate([_request()])
    again = llama.generate([_request()])
    assert [(c.request_id, c.index) for c in first] == [("q", 0), ("q", 1)]
    assert [c.text for c in first] == [c.text for c in again]
    assert all(c.error is None and c.completion_tokens > 0 and c.prompt_tokens > 10 for c in first)
    assert all(c.completion_tokens <= 12 for c in first)


def test_prompt_uses_the_models_chat_template_and_ends_with_the_prefix(llama):
    prompt = llama.render_prompt(_request().messages, "Step 1: 2 + 3 =")
    assert prompt.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\nStep 1: 2 + 3 =")


def test_prefix_is_continued_and_not_repeated(llama):
    plain, prefixed = llama.generate([_request(n=1), _request(n=1, prefix="Step 1: 2 + 3 =")])
    assert prefixed.error is None and prefixed.text
    assert not prefixed.text.lstrip().startswith("Step 1")
    # The prefix is part of the prompt: the prompt is longer by its tokens.
    assert prefixed.prompt_tokens > plain.prompt_tokens


def test_logprobs_one_per_generated_token(llama):
    [c] = llama.generate([_request(n=1, logprobs=1, max_tokens=6)])
    assert c.error is None
    assert len(c.logprobs) == c.completion_tokens
    assert all(lp <= 0.0 for lp in c.logprobs)


def _batch(count=6, n=2):
    messages = ({"role": "user", "content": "What is 2 + 3?"},)
    return [GenerationRequest(f"r{i}", messages, n, 10 * i, SamplingParams(max_tokens=6 + 3 * i, stop=("\n\n",)))
            for i in range(count)]


def test_stream_batched_yields_each_request_once_with_the_generate_texts(llama):
    """Batched decoding (8 slots, 12 samples of different lengths): the stream answers each request once, in
    finishing order, with the texts `generate` returns in request order; repeated, the same texts (seeded)."""
    assert llama.parallel == 8
    requests = _batch()
    in_order = llama.generate(requests)
    assert [(c.request_id, c.index) for c in in_order] == [(r.request_id, i) for r in requests for i in range(2)]
    assert all(c.error is None and 0 < c.completion_tokens <= r.params.max_tokens
               for r in requests for c in in_order if c.request_id == r.request_id)
    streamed = list(llama.stream(iter(requests)))
    assert sorted(cs[0].request_id for cs in streamed) == [r.request_id for r in requests]
    assert all([c.index for c in cs] == [0, 1] for cs in streamed)
    assert sorted((c.request_id, c.index, c.text) for cs in streamed for c in cs) == \
        sorted((c.request_id, c.index, c.text) for c in in_order)
    assert len({c.text for c in in_order}) > 6  # seeds differ per sample: not one text repeated


def test_stream_pulls_requests_as_slots_free_up(llama):
    pulled = []

    def source():
        for request in _batch(12, n=2):  # 24 samples through 8 slots
            pulled.append(request.request_id)
            yield request

    stream = llama.stream(source())
    first = next(stream)
    assert first[0].error is None and len(pulled) < 12  # answered while requests were still waiting
    stream.close()


def test_one_at_a_time_path_still_serves(llama):
    llama.parallel = 1
    try:
        [a, b] = llama.generate([_request()])
    finally:
        llama.parallel = 8
    assert a.error is None and b.error is None and a.text and b.text


def test_prompts_longer_than_one_step_holds_wait_for_the_next_step(llama):
    """8 slots of 200-token prompts do not fit one step's batch (n_ctx 512): the samples that wait are answered too."""
    question = "Add these numbers one by one and explain each step: " + " + ".join(str(i) for i in range(60))
    requests = [GenerationRequest(f"long{i}", ({"role": "user", "content": question},), 4, i,
                                  SamplingParams(max_tokens=4)) for i in range(3)]
    completions = llama.generate(requests)
    assert len(completions) == 12 and all(c.error is None and c.completion_tokens > 0 for c in completions)
    assert all(c.prompt_tokens > 150 for c in completions)
