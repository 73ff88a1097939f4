"""A MinHash LSH index in Redis shared by builds that must not publish the same near-duplicate twice.

Nothing read from the server is ever unpickled or evaluated: keys and values are plain bytes. Under the prefix
`<basename>:<kind>:<hash of the MinHash parameters>` (indexes built with other parameters never mix):

- `…:b:<band>:<the band's signature bytes>`: the set of row ids whose signature has these values in that band;
- `…:e:<row id>`: a hash with `sig` (the signature, little-endian uint32), `sh` (the sorted distinct shingle hashes,
  big-endian uint32, so a match near the threshold is confirmed by exact Jaccard), `group` (scope "question": the
  question id), `state` (`claimed` or `published`), `owner` (the build) and, for a claim, `expires` (unix seconds);
- `…:claims:<owner>`: the ids a build has claimed and not yet published.

A build checks its kept rows and claims the new ones in one Lua script per batch. Redis runs one script at a time, so
the check and the insert are one step: two builds cannot both find a row absent and both keep it. Similarity is
decided as in `confirm.py`: the signature estimate when it is outside the decisive band, else exact Jaccard of the
stored shingle sets (the estimate only for an entry without them). A row similar to a published entry is flagged
`earlier_version`; one similar to another build's live claim, `concurrent_build`. A claim becomes an entry other builds treat as published
only when its build has published (`publish_claims`); a build that fails releases its claims (`release_claims`),
and the claims of a killed build expire after `claim_ttl_s`: a failed build never poisons the index.

The LSH layout (bands x rows, part of the prefix) is `bands_rows`, tuned for recall. Entries written under the
layout before 2026-11-30 (datasketch's optimum, 9 x 13 at 0.8) are adopted once into the new prefix by the first
build that opens it (`migrate`; idempotent, so concurrent builds may both run it): their signatures are re-banded,
they keep their state and owner, and they are decided by the estimate (they hold no shingle sets).

The scripts name their keys at run time, which a single Redis server (or a replicated one) allows and Redis Cluster
does not.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa

from cotforge.schemas.config_dedup import MinHashConfig, RedisIndexConfig
from cotforge.schemas.records import stable_id
from cotforge.tasks.dedup.confirm import decisive_band, shingle_sets
from cotforge.tasks.dedup.lsh import bands_rows, lsh_params
from cotforge.tasks.dedup.minhash import normalize_fast

BATCH = 256  # rows per script call: each call blocks the server, so keep it short

# Lua helpers shared by both scripts. A signature is `num_perm` little-endian uint32 values; band b is bytes
# [b*rows*4, (b+1)*rows*4). Similarity is the share of equal values (datasketch's Jaccard estimate).
_LUA_COMMON = """
local prefix, owner, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local bands, rows, num_perm = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function band_key(sig, b)
  return prefix .. ":b:" .. b .. ":" .. string.sub(sig, b * rows * 4 + 1, (b + 1) * rows * 4)
end
local function drop(id, sig)
  for b = 0, bands - 1 do redis.call("SREM", band_key(sig, b), id) end
  redis.call("DEL", prefix .. ":e:" .. id)
end
local function estimate(a, b)
  local same = 0
  for k = 0, num_perm - 1 do
    if string.sub(a, k * 4 + 1, k * 4 + 4) == string.sub(b, k * 4 + 1, k * 4 + 4) then same = same + 1 end
  end
  return same / num_perm
end
local function word(s, i)  -- the i-th big-endian uint32 of s (0-based), as a number
  local b1, b2, b3, b4 = string.byte(s, i * 4 + 1, i * 4 + 4)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end
local function exact(a, b)  -- Jaccard of two sorted distinct uint32 sets
  local na, nb, i, j, inter = #a / 4, #b / 4, 0, 0, 0
  while i < na and j < nb do
    local x, y = word(a, i), word(b, j)
    if x == y then inter, i, j = inter + 1, i + 1, j + 1 elseif x < y then i = i + 1 else j = j + 1 end
  end
  if na + nb == 0 then return 1 end
  return inter / (na + nb - inter)
end
-- lo, hi: the decisive band; sh "" when a side has no shingle sets (then the estimate decides)
local function similarity(sig_a, sh_a, sig_b, sh_b, threshold, lo, hi)
  local s = estimate(sig_a, sig_b)
  if s < lo or s >= hi or sh_a == "" or not sh_b or sh_b == "" then
    if s < lo or s >= hi or s >= threshold then return s end
    return -1
  end
  return exact(sh_a, sh_b)
end
"""

# ARGV: prefix, owner, now, bands, rows, num_perm, threshold, scoped, state, expires, lo, hi, then
# (id, group, sig, sh) quadruples.
# Per row: {} when it was claimed (or published) by this owner, else {other id, similarity, other's state}.
_CHECK_AND_CLAIM = _LUA_COMMON + """
local threshold, scoped, state, expires = tonumber(ARGV[7]), ARGV[8] == "1", ARGV[9], ARGV[10]
local lo, hi = tonumber(ARGV[11]), tonumber(ARGV[12])
local claims = prefix .. ":claims:" .. owner
local out = {}
for i = 13, #ARGV, 4 do
  local id, group, sig, sh = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local best, best_sim, best_state, seen = nil, -1, nil, {}
  for b = 0, bands - 1 do
    local key = band_key(sig, b)
    for _, other in ipairs(redis.call("SMEMBERS", key)) do
      if not seen[other] then
        seen[other] = true
        local e = redis.call("HMGET", prefix .. ":e:" .. other, "sig", "group", "state", "owner", "expires", "sh")
        if not e[1] then
          redis.call("SREM", key, other)  -- a released entry left in this bucket
        elseif e[3] == "claimed" and e[4] ~= owner and tonumber(e[5]) < now then
          drop(other, e[1])  -- the claim of a build that died before publishing
        elseif e[4] ~= owner and (not scoped or e[2] == group or other == id) then  -- an id is its content
          local s = similarity(sig, sh, e[1], e[6], threshold, lo, hi)
          if s >= threshold and s > best_sim then best, best_sim, best_state = other, s, e[3] end
        end
      end
    end
  end
  if best then
    out[#out + 1] = {best, tostring(best_sim), best_state}
  else
    local entry = prefix .. ":e:" .. id
    if state == "published" then
      redis.call("HSET", entry, "sig", sig, "sh", sh, "group", group, "state", state, "owner", owner)
      redis.call("HDEL", entry, "expires")
      redis.call("SREM", claims, id)
    else
      local current = redis.call("HGET", entry, "state")
      if current ~= "published" then
        redis.call("HSET", entry, "sig", sig, "sh", sh, "group", group, "state", state, "owner", owner,
                   "expires", expires)
        redis.call("SADD", claims, id)
      end
    end
    for b = 0, bands - 1 do redis.call("SADD", band_key(sig, b), id) end
    out[#out + 1] = {}
  end
end
return out
"""

# ARGV: prefix, owner, now, bands, rows, num_perm. Drops every claim of `owner` not yet published.
_RELEASE = _LUA_COMMON + """
local claims = prefix .. ":claims:" .. owner
local released = 0
for _, id in ipairs(redis.call("SMEMBERS", claims)) do
  local e = redis.call("HMGET", prefix .. ":e:" .. id, "sig", "state", "owner")
  if e[1] and e[2] == "claimed" and e[3] == owner then
    drop(id, e[1])
    released = released + 1
  end
end
redis.call("DEL", claims)
return released
"""


# ARGV: new prefix, new bands, new rows, legacy prefix, then ids. Copies legacy entries absent from the new prefix.
_ADOPT = """
local prefix, bands, rows, legacy = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local adopted = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local e = redis.call("HMGET", legacy .. ":e:" .. id, "sig", "group", "state", "owner", "expires")
  if e[1] and redis.call("EXISTS", prefix .. ":e:" .. id) == 0 then
    local entry = prefix .. ":e:" .. id
    redis.call("HSET", entry, "sig", e[1], "group", e[2] or "", "state", e[3], "owner", e[4])
    if e[5] then redis.call("HSET", entry, "expires", e[5]) end
    if e[3] == "claimed" then redis.call("SADD", prefix .. ":claims:" .. e[4], id) end
    for b = 0, bands - 1 do
      redis.call("SADD", prefix .. ":b:" .. b .. ":" .. string.sub(e[1], b * rows * 4 + 1, (b + 1) * rows * 4), id)
    end
    adopted = adopted + 1
  end
end
return adopted
"""


def _prefix(basename: str, kind: str, config: MinHashConfig, bands: int, rows: int) -> str:
    params = {"num_perm": config.num_perm, "seed": config.seed, "shingle": config.shingle,
              "shingle_size": config.shingle_size, "hash": config.hash, "bands": bands, "rows": rows}
    return f"{basename}:{kind}:{stable_id(json.dumps(params, sort_keys=True), length=8)}"


class SharedIndex:
    """One kind of text (questions or rationales) in the shared index, for one owner (a build)."""

    def __init__(self, redis: RedisIndexConfig, config: MinHashConfig, kind: str, owner: str, client=None):
        import redis as redis_py

        self.config, self.owner, self.ttl = config, owner, redis.claim_ttl_s
        self.bands, self.rows = bands_rows(config)
        self.prefix = _prefix(redis.basename, kind, config, self.bands, self.rows)
        # the layout every index had before candidates were tuned for recall (bands and rows left to the optimiser)
        self.legacy_prefix = None if config.bands else _prefix(redis.basename, kind, config,
                                                               *lsh_params(config.threshold, config.num_perm))
        self.client = client or redis_py.Redis(host=redis.host, port=redis.port, db=redis.db)
        self._check = self.client.register_script(_CHECK_AND_CLAIM)
        self._release = self.client.register_script(_RELEASE)
        self._adopt = self.client.register_script(_ADOPT)
        self.adopted = self.migrate()

    def migrate(self) -> int:
        """Adopt the entries of the legacy layout once (a marker key says it was done); the number adopted."""
        if self.legacy_prefix is None or self.legacy_prefix == self.prefix or \
                self.client.exists(f"{self.prefix}:adopted"):
            return 0
        adopted, ids = 0, []
        head = f"{self.legacy_prefix}:e:".encode()
        for key in self.client.scan_iter(match=head + b"*", count=1000):
            ids.append(key[len(head):])
            if len(ids) == BATCH:
                adopted += int(self._adopt(args=[self.prefix, self.bands, self.rows, self.legacy_prefix, *ids]))
                ids = []
        if ids:
            adopted += int(self._adopt(args=[self.prefix, self.bands, self.rows, self.legacy_prefix, *ids]))
        self.client.set(f"{self.prefix}:adopted", self.legacy_prefix)
        return adopted

    def _head(self) -> list:
        return [self.prefix, self.owner, int(time.time()), self.bands, self.rows, self.config.num_perm]

    def _shingles(self, texts: list[str | None] | None, n: int) -> list[bytes]:
        """Each text's sorted distinct shingle hashes as big-endian uint32 bytes (b"" without a text)."""
        if texts is None:
            return [b""] * n
        offsets, values = shingle_sets([normalize_fast(t or "") for t in texts], self.config)
        raw = values.astype(">u4").tobytes()
        return [raw[offsets[i] * 4:offsets[i + 1] * 4] if texts[i] is not None else b"" for i in range(n)]

    def _run(self, state: str, ids: list[str], signatures: np.ndarray, groups: list[str | None] | None,
             texts: list[str | None] | None = None) -> list[tuple[str, float, str] | None]:
        scoped = self.config.scope == "question" and groups is not None
        out: list[tuple[str, float, str] | None] = []
        raw = np.ascontiguousarray(signatures, dtype="<u4")
        lo, hi = decisive_band(self.config.threshold, self.config.num_perm)
        for start in range(0, len(ids), BATCH):
            stop = min(start + BATCH, len(ids))
            shingles = self._shingles(texts[start:stop] if texts is not None else None, stop - start)
            args = self._head() + [self.config.threshold, "1" if scoped else "0", state,
                                   int(time.time() + self.ttl), repr(lo), repr(hi)]
            for i in range(start, stop):
                args += [ids[i], (groups[i] or "") if scoped else "", raw[i].tobytes(), shingles[i - start]]
            for reply in self._check(args=args):
                out.append((reply[0].decode(), float(reply[1]), reply[2].decode()) if reply else None)
        return out

    def check_and_claim(self, ids: list[str], signatures: np.ndarray, groups: list[str | None] | None = None,
                        texts: list[str | None] | None = None) -> list[tuple[str, float, str] | None]:
        """For each row, atomically: the most similar entry another build published or claims (id, similarity,
        state), or None, in which case this build now claims the row. `texts` (the rows' texts) are stored as
        shingle sets and confirm matches near the threshold exactly."""
        return self._run("claimed", ids, signatures, groups, texts)

    def publish(self, ids: list[str], signatures: np.ndarray, groups: list[str | None] | None = None,
                texts: list[str | None] | None = None) -> list[tuple[str, float, str] | None]:
        """Turn this build's claims on these rows into published entries (a lapsed claim is checked again: a row
        another build took meanwhile is returned, as in `check_and_claim`, and not entered twice)."""
        return self._run("published", ids, signatures, groups, texts)

    def release(self) -> int:
        """Drop this build's claims that were never published; the number dropped."""
        return int(self._release(args=self._head()))


def claim_owner(build_id: str, out: str) -> str:
    """Who claims rows in the shared index: one build (a recipe at a version) into one output, so a resumed build
    finds its own claims, while the same recipe built into another folder is another claimant."""
    return f"build-{stable_id(build_id, out)}"


def shared_index_filter(table: pa.Table, signatures: np.ndarray, redis: RedisIndexConfig, config: MinHashConfig,
                        kind: str, owner: str, id_column: str, group_column: str | None = None,
                        texts: list[str] | None = None) -> pa.Table:
    """Check this build's kept rows against the shared index and claim the new ones (one atomic step per row): rows
    another build published are flagged "earlier_version", rows another live build claimed "concurrent_build";
    `texts`: the rows' texts (their shingle sets confirm matches near the threshold)."""
    index = SharedIndex(redis, config, kind, owner)
    keep = table.column("keep").to_pylist()
    ids = table.column(id_column).to_pylist()
    groups = table.column(group_column).to_pylist() if group_column else None
    kept = [i for i, k in enumerate(keep) if k]
    matches = index.check_and_claim([ids[i] for i in kept], signatures[kept],
                                    [groups[i] for i in kept] if groups is not None else None,
                                    [texts[i] for i in kept] if texts is not None else None)
    cluster, reason, similarity = (table.column(c).to_pylist() for c in ("cluster_id", "drop_reason", "similarity"))
    for i, match in zip(kept, matches):
        if match is not None:
            other, score, state = match
            keep[i], cluster[i], similarity[i] = False, other, score
            reason[i] = "earlier_version" if state == "published" else "concurrent_build"
    for name, values in (("keep", keep), ("drop_reason", reason), ("cluster_id", cluster),
                         ("similarity", similarity)):
        position = table.schema.get_field_index(name)
        table = table.set_column(position, table.schema.field(name), pa.array(values, table.schema.field(name).type))
    return table
