"""A MinHash LSH index in Redis shared by builds that must not publish the same near-duplicate twice.

Nothing read from the server is ever unpickled or evaluated: keys and values are plain bytes. Under the prefix
`<basename>:<kind>:<hash of the MinHash parameters>` (indexes built with other parameters never mix):

- `…:b:<band>:<the band's signature bytes>`: the set of row ids whose signature has these values in that band;
- `…:e:<row id>`: a hash with `sig` (the signature, little-endian uint32), `group` (scope "question": the question
  id), `state` (`claimed` or `published`), `owner` (the build) and, for a claim, `expires` (unix seconds);
- `…:claims:<owner>`: the ids a build has claimed and not yet published.

A build checks its kept rows and claims the new ones in one Lua script per batch. Redis runs one script at a time, so
the check and the insert are one step: two builds cannot both find a row absent and both keep it. A row similar
(estimated Jaccard >= threshold, on the stored signatures) to a published entry is flagged `earlier_version`; one
similar to another build's live claim, `concurrent_build`. A claim becomes an entry other builds treat as published
only when its build has published (`publish_claims`); a build that fails releases its claims (`release_claims`),
and the claims of a killed build expire after `claim_ttl_s`: a failed build never poisons the index.

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
from cotforge.tasks.dedup.minhash import bands_rows

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
local function similarity(a, b)
  local same = 0
  for k = 0, num_perm - 1 do
    if string.sub(a, k * 4 + 1, k * 4 + 4) == string.sub(b, k * 4 + 1, k * 4 + 4) then same = same + 1 end
  end
  return same / num_perm
end
"""

# ARGV: prefix, owner, now, bands, rows, num_perm, threshold, scoped, state, expires, then (id, group, sig) triples.
# Per row: {} when it was claimed (or published) by this owner, else {other id, similarity, other's state}.
_CHECK_AND_CLAIM = _LUA_COMMON + """
local threshold, scoped, state, expires = tonumber(ARGV[7]), ARGV[8] == "1", ARGV[9], ARGV[10]
local claims = prefix .. ":claims:" .. owner
local out = {}
for i = 11, #ARGV, 3 do
  local id, group, sig = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local best, best_sim, best_state, seen = nil, -1, nil, {}
  for b = 0, bands - 1 do
    local key = band_key(sig, b)
    for _, other in ipairs(redis.call("SMEMBERS", key)) do
      if not seen[other] then
        seen[other] = true
        local e = redis.call("HMGET", prefix .. ":e:" .. other, "sig", "group", "state", "owner", "expires")
        if not e[1] then
          redis.call("SREM", key, other)  -- a released entry left in this bucket
        elseif e[3] == "claimed" and e[4] ~= owner and tonumber(e[5]) < now then
          drop(other, e[1])  -- the claim of a build that died before publishing
        elseif e[4] ~= owner and (not scoped or e[2] == group or other == id) then  -- an id is its content
          local s = similarity(sig, e[1])
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
      redis.call("HSET", entry, "sig", sig, "group", group, "state", state, "owner", owner)
      redis.call("HDEL", entry, "expires")
      redis.call("SREM", claims, id)
    else
      local current = redis.call("HGET", entry, "state")
      if current ~= "published" then
        redis.call("HSET", entry, "sig", sig, "group", group, "state", state, "owner", owner, "expires", expires)
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


class SharedIndex:
    """One kind of text (questions or rationales) in the shared index, for one owner (a build)."""

    def __init__(self, redis: RedisIndexConfig, config: MinHashConfig, kind: str, owner: str, client=None):
        import redis as redis_py

        self.config, self.owner, self.ttl = config, owner, redis.claim_ttl_s
        self.bands, self.rows = bands_rows(config)
        params = {"num_perm": config.num_perm, "seed": config.seed, "shingle": config.shingle,
                  "shingle_size": config.shingle_size, "hash": config.hash, "bands": self.bands, "rows": self.rows}
        self.prefix = f"{redis.basename}:{kind}:{stable_id(json.dumps(params, sort_keys=True), length=8)}"
        self.client = client or redis_py.Redis(host=redis.host, port=redis.port, db=redis.db)
        self._check = self.client.register_script(_CHECK_AND_CLAIM)
        self._release = self.client.register_script(_RELEASE)

    def _head(self) -> list:
        return [self.prefix, self.owner, int(time.time()), self.bands, self.rows, self.config.num_perm]

    def _run(self, state: str, ids: list[str], signatures: np.ndarray, groups: list[str | None] | None
             ) -> list[tuple[str, float, str] | None]:
        scoped = self.config.scope == "question" and groups is not None
        out: list[tuple[str, float, str] | None] = []
        raw = np.ascontiguousarray(signatures, dtype="<u4")
        for start in range(0, len(ids), BATCH):
            args = self._head() + [self.config.threshold, "1" if scoped else "0", state,
                                   int(time.time() + self.ttl)]
            for i in range(start, min(start + BATCH, len(ids))):
                args += [ids[i], (groups[i] or "") if scoped else "", raw[i].tobytes()]
            for reply in self._check(args=args):
                out.append((reply[0].decode(), float(reply[1]), reply[2].decode()) if reply else None)
        return out

    def check_and_claim(self, ids: list[str], signatures: np.ndarray, groups: list[str | None] | None = None
                        ) -> list[tuple[str, float, str] | None]:
        """For each row, atomically: the most similar entry another build published or claims (id, similarity,
        state), or None, in which case this build now claims the row."""
        return self._run("claimed", ids, signatures, groups)

    def publish(self, ids: list[str], signatures: np.ndarray, groups: list[str | None] | None = None
                ) -> list[tuple[str, float, str] | None]:
        """Turn this build's claims on these rows into published entries (a lapsed claim is checked again: a row
        another build took meanwhile is returned, as in `check_and_claim`, and not entered twice)."""
        return self._run("published", ids, signatures, groups)

    def release(self) -> int:
        """Drop this build's claims that were never published; the number dropped."""
        return int(self._release(args=self._head()))


def claim_owner(build_id: str, out: str) -> str:
    """Who claims rows in the shared index: one build (a recipe at a version) into one output, so a resumed build
    finds its own claims, while the same recipe built into another folder is another claimant."""
    return f"build-{stable_id(build_id, out)}"


def shared_index_filter(table: pa.Table, signatures: np.ndarray, redis: RedisIndexConfig, config: MinHashConfig,
                        kind: str, owner: str, id_column: str, group_column: str | None = None) -> pa.Table:
    """Check this build's kept rows against the shared index and claim the new ones (one atomic step per row): rows
    another build published are flagged "earlier_version", rows another live build claimed "concurrent_build"."""
    index = SharedIndex(redis, config, kind, owner)
    keep = table.column("keep").to_pylist()
    ids = table.column(id_column).to_pylist()
    groups = table.column(group_column).to_pylist() if group_column else None
    kept = [i for i, k in enumerate(keep) if k]
    matches = index.check_and_claim([ids[i] for i in kept], signatures[kept],
                                    [groups[i] for i in kept] if groups is not None else None)
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
