"""Recipe section `questions`: where questions come from, mixed by count or by weight.

Four kinds of source (a discriminated union on `kind`): `family` (programmatic, answers computed), `seed` (a local
JSONL/Parquet/CSV file or a Hub dataset, with a field mapping and answer parsing), `synth` (questions an LLM writes,
from topics or evolved from seed questions, kept only when they pass validity and solvability checks),
`reasoning_gym` (one of reasoning-gym's procedural tasks, scored by its own scorer; extra `cotforge[gym]`).

Each source gives either `n` (a count) or `weight`; weights share `questions.total` between their sources.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from cotforge.schemas.config_base import StrictConfig
from cotforge.schemas.config_generation import GenerationConfig, SamplingConfig

SOURCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Counted(StrictConfig):
    n: int | None = Field(default=None, gt=0)  # how many questions this source contributes (seed: at most)
    weight: float | None = Field(default=None, gt=0)  # share of `questions.total` instead of a count


class FamilySourceConfig(_Counted):
    """Questions from a programmatic family with computed answers."""

    kind: Literal["family"] = "family"
    family: str
    difficulty: int = Field(default=1, ge=1, le=10)
    # Family-specific knobs, plus `unanswerable_rate` (0..1) for every family: a share of perturbed questions whose
    # right response is to abstain.
    params: dict[str, int | float | str | bool] = {}

    @model_validator(mode="after")
    def _count_or_weight(self):
        if (self.n is None) == (self.weight is None):
            raise ValueError("give exactly one of `n` (a count) or `weight` (a share of questions.total)")
        return self


class ReasoningGymSourceConfig(_Counted):
    """Questions from a reasoning-gym task (`reasoning_gym.create_dataset(task, **config)`), scored by its scorer.

    Mix several tasks by giving several sources, each with `n` or a `weight` of `questions.total`."""

    kind: Literal["reasoning_gym"] = "reasoning_gym"
    task: str = Field(pattern=r"^[a-z0-9_]+$")  # a registered reasoning-gym dataset name, e.g. "chain_sum"
    config: dict[str, Any] = {}  # the task's config fields (its dataclass); these win over `level`
    level: int | None = Field(default=None, ge=0)  # the task's curriculum level (0: easiest), all attributes at once
    name: str | None = Field(default=None, pattern=SOURCE_NAME)  # source tag "reasoning_gym:<name>" (default: task)

    @model_validator(mode="after")
    def _count_or_weight(self):
        if (self.n is None) == (self.weight is None):
            raise ValueError("give exactly one of `n` (a count) or `weight` (a share of questions.total)")
        if {"seed", "size"} & set(self.config):
            raise ValueError("`config` may not set `seed` or `size`: cotforge derives one seed per item")
        return self

    @property
    def tag(self) -> str:
        return f"reasoning_gym:{self.name or self.task}"


class HubDatasetConfig(StrictConfig):
    """A dataset repo on the Hub (or any Hub-compatible server named by HF_ENDPOINT)."""

    repo: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
    config: str | None = None  # dataset config (subset) name, e.g. "main" for gsm8k
    split: str = "train"
    revision: str | None = None  # branch, tag or commit sha; pin one for reproducible builds
    # Files to read (glob patterns within the repo, read as one split); None: the files `datasets.load_dataset` reads
    # for this config and split (the card's `configs` entry, else datasets' usual layouts). Needs `cotforge[hub]`.
    data_files: list[str] | None = None


class SeedFieldsConfig(StrictConfig):
    """Which columns of the seed rows hold what (names in the file)."""

    question: str = "question"
    answer: str | None = "answer"  # None: questions without gold answers (pseudo-labels may come from the vote)
    choices: str | None = None  # a list column (or {"label": [...], "text": [...]}); the options are appended
    solution: str | None = None  # worked solution; with answer_format boxed the answer may come from here
    id: str | None = None  # the row's own id, kept in metadata


class SeedSourceConfig(_Counted):
    """Questions from an existing dataset: a local file or a Hub dataset."""

    kind: Literal["seed"] = "seed"
    name: str = Field(pattern=SOURCE_NAME)  # the source tag: questions get source "seed:<name>"
    path: str | None = None  # local file (relative paths from the working directory)
    hub: HubDatasetConfig | None = None
    format: Literal["auto", "jsonl", "parquet", "csv"] = "auto"  # auto: by file extension
    fields: SeedFieldsConfig = SeedFieldsConfig()
    # gsm8k: "... #### 42"; boxed: the final \boxed{...} answer, adjacent boxes together (MATH); choice: an option
    # letter (or index, or the option text); number: a plain number; text: any non-empty string; auto: tried in that
    # order.
    answer_format: Literal["auto", "gsm8k", "boxed", "choice", "number", "text"] = "auto"
    verifier: str | None = None  # override the verifier the answer format implies
    shuffle: bool = False  # take a seeded random subset when n is smaller than the file
    # A longer question is a rejected row (`question_too_long`), not a prompt: a stray megabyte would otherwise cost
    # the context window of every sample. 20,000 characters hold the longest MATH and contest-coding statements.
    max_question_chars: int = Field(default=20_000, gt=0)

    @model_validator(mode="after")
    def _one_location(self):
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` (a local file) or `hub` (a Hub dataset)")
        if self.n is not None and self.weight is not None:
            raise ValueError("give at most one of `n` or `weight`")
        return self


class ValidityConfig(StrictConfig):
    """Is a synthesised question well formed with one answer? Rules first; the LLM judge where rules can't tell."""

    min_chars: int = Field(default=15, ge=1)
    max_chars: int = Field(default=1200, gt=0)
    judge: bool = True  # ask the judge model about candidates the rules cannot decide
    judge_generation: GenerationConfig | None = None  # None: the synthesis generator judges
    accept_undecided: bool = False  # keep candidates neither the rules nor the judge could decide


class SolvabilityConfig(StrictConfig):
    """Can the question be solved? Sample answers and require them to agree (with the proposed answer, if any)."""

    samples: int = Field(default=4, gt=0)
    min_agreement: float = Field(default=0.5, ge=0.0, le=1.0)  # share of samples that must give the agreed answer
    solver_generation: GenerationConfig | None = None  # None: the synthesis generator solves
    sampling: SamplingConfig = SamplingConfig(temperature=0.7, max_tokens=256)


class SynthSourceConfig(StrictConfig):
    """Questions an LLM writes: from topic prompts (ScaleQuest-style) or evolved from seed questions."""

    kind: Literal["synth"] = "synth"
    name: str = Field(pattern=SOURCE_NAME)  # questions get source "synth:<name>"
    mode: Literal["scratch", "evolve"] = "scratch"
    topics: list[str] = []  # scratch: one prompt per topic
    candidates_per_prompt: int = Field(default=2, gt=0)  # scratch: per topic; evolve: per seed and direction
    from_seed: SeedSourceConfig | None = None  # evolve: the questions to start from
    from_family: FamilySourceConfig | None = None  # evolve: or family questions to start from
    directions: list[Literal["harder", "easier"]] = ["harder", "easier"]
    answer_type: Literal["number", "text"] = "number"  # number: math verifier; text: exact match
    generation: GenerationConfig = GenerationConfig()  # the writer model
    sampling: SamplingConfig = SamplingConfig(temperature=0.9, max_tokens=200)
    validity: ValidityConfig = ValidityConfig()
    solvability: SolvabilityConfig = SolvabilityConfig()
    n: int | None = Field(default=None, gt=0)  # keep at most this many accepted questions
    weight: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _mode_inputs(self):
        if self.mode == "scratch" and not self.topics:
            raise ValueError("mode scratch needs `topics` (one or more topic or domain prompts)")
        if self.mode == "evolve" and (self.from_seed is None) == (self.from_family is None):
            raise ValueError("mode evolve needs exactly one of `from_seed` or `from_family`")
        if self.n is not None and self.weight is not None:
            raise ValueError("give at most one of `n` or `weight`")
        return self


QuestionSourceConfig = Annotated[Union[FamilySourceConfig, SeedSourceConfig, SynthSourceConfig,
                                       ReasoningGymSourceConfig],
                                 Field(discriminator="kind")]


class QuestionsConfig(StrictConfig):
    sources: list[QuestionSourceConfig] = Field(min_length=1)
    total: int | None = Field(default=None, gt=0)  # shared among the sources that give a `weight`

    @model_validator(mode="after")
    def _weights_need_total(self):
        weighted = [s for s in self.sources if s.weight is not None]
        if weighted and self.total is None:
            raise ValueError("sources with a `weight` need `questions.total` (the number of questions to share)")
        if self.total is not None and not weighted:
            raise ValueError("`questions.total` is shared among sources with a `weight`; none has one")
        return self

    def source_counts(self) -> list[int | None]:
        """Questions asked of each source: its `n`, or its share of `total` by weight (largest remainders, so the
        shares add up to `total` exactly). None: a seed or synth source with neither (take all it has)."""
        weighted = [(i, s.weight) for i, s in enumerate(self.sources) if s.weight is not None]
        counts: list[int | None] = [s.n for s in self.sources]
        if weighted:
            whole = sum(w for _, w in weighted)
            exact = [(i, self.total * w / whole) for i, w in weighted]
            floors = {i: int(x) for i, x in exact}
            left = self.total - sum(floors.values())
            for i, _ in sorted(exact, key=lambda e: (int(e[1]) - e[1], e[0]))[:left]:
                floors[i] += 1
            for i, count in floors.items():
                counts[i] = count
        return counts
