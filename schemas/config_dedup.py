"""Recipe section `dedup`: exact and MinHash near-duplicate flags, incremental across versions, and decontamination."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cotforge.schemas.config_base import StrictConfig

KeepRule = Literal["verified", "shortest", "longest", "earliest"]


class MinHashConfig(StrictConfig):
    """How one kind of text (questions or rationales) is near-deduplicated."""

    threshold: float = Field(default=0.8, gt=0.0, lt=1.0)  # estimated Jaccard similarity that makes a duplicate
    num_perm: int = Field(default=128, ge=16, le=1024)
    shingle: Literal["chars", "words"] = "chars"  # byte k-grams or word n-grams of the normalised text
    shingle_size: int = Field(default=5, ge=1, le=64)
    hash: Literal["fast", "sha1"] = "fast"  # shingle hash: vectorised polynomial, or datasketch's sha1_hash32
    seed: int = 1  # datasketch MinHash seed (permutations)
    bands: int | None = Field(default=None, ge=1)  # LSH bands; None: tuned for recall (`candidate_miss`)
    rows: int | None = Field(default=None, ge=1)  # rows per band; set together with `bands`
    # Share of pairs at exactly `threshold` the candidate LSH may miss (it sets bands and rows when they are None)
    candidate_miss: float = Field(default=0.01, gt=0.0, lt=1.0)
    scope: Literal["global", "question"] = "global"  # "question": only texts of the same question are compared
    keep: list[KeepRule] = Field(default=["verified", "shortest", "earliest"], min_length=1)
    # Representatives an LSH bucket keeps for clustering (each member is compared with these, never with every member;
    # decontam: bucket size above which pairs are linked as a chain)
    max_bucket: int = Field(default=256, ge=2)

    @model_validator(mode="after")
    def _bands_rows(self) -> MinHashConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both `bands` and `rows`, or neither (then they follow from `threshold`)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class EvalSetConfig(StrictConfig):
    """One evaluation set to decontaminate against: a local JSONL/Parquet file or folder, or a Hub dataset."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # appears in drop reasons: contaminated:<name>
    path: str | None = None  # local .jsonl / .json / .parquet file, or a folder of them
    hub: str | None = None  # Hub dataset repo id (downloaded with huggingface_hub, honours HF_ENDPOINT)
    revision: str | None = None
    split: str | None = None  # file-name filter for Hub repos (e.g. "test")
    text_fields: list[str] = Field(default=["question"], min_length=1)  # joined with a space when several

    @model_validator(mode="after")
    def _one_source(self) -> EvalSetConfig:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` or `hub`")
        return self


class DecontamConfig(StrictConfig):
    evals: list[EvalSetConfig] = []
    ngram: int = Field(default=13, ge=1)  # word n-gram length of the overlap test
    min_ngram_hits: int = Field(default=1, ge=1)  # shared n-grams that make a hit
    minhash_threshold: float = Field(default=0.7, gt=0.0, lt=1.0)  # estimated Jaccard that makes a hit
    minhash: MinHashConfig = MinHashConfig(threshold=0.7)  # shingling of the similarity test (its threshold unused)


class RedisIndexConfig(StrictConfig):
    """A shared MinHash LSH index in Redis (tasks/dedup/shared_index.py), for builds that must not publish the same
    near-duplicate twice: plain bytes, an atomic check-and-claim, entries only once a build has published."""

    host: str = "127.0.0.1"
    port: int = Field(default=6379, ge=1, le=65535)
    db: int = Field(default=0, ge=0)
    basename: str = Field(default="cotforge", pattern=r"^[A-Za-z0-9._:-]+$")
    # A build's claims on rows it has not published yet lapse after this long if the build dies without releasing
    # them (a failed build releases them at once); keep it above the time from dedup to publish.
    claim_ttl_s: int = Field(default=86_400, ge=1)


class DedupConfig(StrictConfig):
    questions: MinHashConfig = MinHashConfig()
    samples: MinHashConfig = MinHashConfig(threshold=0.85, shingle="words", shingle_size=3, scope="question")
    # Earlier published versions to deduplicate against: local/fsspec folders, or "hf://datasets/<repo>[@rev]".
    # The previous version of the same output (its folder holds the index of every version before it) is always added.
    earlier_versions: list[str] = []
    redis: RedisIndexConfig | None = None
    decontam: DecontamConfig = DecontamConfig()
