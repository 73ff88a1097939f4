"""A Hub-compatible HTTP server for tests: the real `huggingface_hub` client and `datasets.load_dataset` work against it.

It speaks the subset of the Hugging Face Hub's HTTP API that `huggingface_hub` 2.4 uses for repositories: create a
repo (private flag), preupload (regular vs LFS mode), the LFS batch API with a basic PUT transfer and a verify step,
NDJSON commits (regular base64 files, LFS pointers, deletions), refs, tags (created once, never moved), repo info with
siblings and card data, tree listing, paths-info, commit listing, and `resolve` downloads (HEAD/GET with ranges) by
branch, tag or commit sha. Repos live on disk under `root`, so a second server on the same root sees the same repos
(a "restarted" Hub).

The client uploads through Xet when `hf_xet` is installed unless `HF_HUB_DISABLE_XET` is set; this server speaks only
the LFS protocol, so `hub_environment()` disables Xet (env var and the already-imported constant).

Failure injection, for tests of retries and interrupted uploads:
- `fail_on={"commit": [503, 429]}`: the next calls to that endpoint answer these statuses, one per call.
- `fail_after_bytes=N`: LFS uploads stop being stored once N bytes in total were received; the upload that crosses
  the limit and every later one answer `fail_status` (507 by default; the client does not retry it by itself).
  `heal()` clears both.

Usage::

    with HubServer() as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

DEFAULT_TOKEN = "hf_cotforgeTestToken0123456789abcdef"
USER = "cotforge-test"
# Extensions the Hub's default .gitattributes stores in LFS (abridged).
LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".jpg", ".bin", ".safetensors", ".gz", ".zip", ".npy", ".pt")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
REPO_TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class RepoStore:
    """Repositories on disk: `<root>/<type>s/<ns>/<name>/{repo.json, commits/<sha>.json, objects/<sha256>}`."""

    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.RLock()

    def path(self, type_: str, repo_id: str) -> Path:
        return self.root / f"{type_}s" / repo_id

    def exists(self, type_: str, repo_id: str) -> bool:
        return (self.path(type_, repo_id) / "repo.json").is_file()

    def meta(self, type_: str, repo_id: str) -> dict:
        path = self.path(type_, repo_id) / "repo.json"
        if not path.is_file():
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return json.loads(path.read_text())

    def save_meta(self, type_: str, repo_id: str, meta: dict) -> None:
        path = self.path(type_, repo_id) / "repo.json"
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, path)

    def object_path(self, type_: str, repo_id: str, sha256: str) -> Path:
        return self.path(type_, repo_id) / "objects" / sha256

    def put_object(self, type_: str, repo_id: str, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.object_path(type_, repo_id, sha)
        if not path.exists():
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return sha

    def commit(self, type_: str, repo_id: str, sha: str) -> dict:
        path = self.path(type_, repo_id) / "commits" / f"{sha}.json"
        if not path.is_file():
            raise HubError(404, f"Invalid rev id: {sha}", "RevisionNotFound")
        return json.loads(path.read_text())

    def write_commit(self, type_: str, repo_id: str, parent: str | None, title: str, description: str,
                     tree: dict[str, dict]) -> str:
        body = {"parents": [parent] if parent else [], "title": title, "message": description, "date": _now(),
                "author": USER, "tree": tree}
        sha = hashlib.sha1(json.dumps(body, sort_keys=True).encode() + uuid.uuid4().bytes).hexdigest()
        body["id"] = sha
        (self.path(type_, repo_id) / "commits" / f"{sha}.json").write_text(json.dumps(body))
        return sha

    def create(self, type_: str, repo_id: str, private: bool) -> None:
        base = self.path(type_, repo_id)
        (base / "commits").mkdir(parents=True, exist_ok=True)
        (base / "objects").mkdir(parents=True, exist_ok=True)
        data = GITATTRIBUTES.encode()
        sha256 = self.put_object(type_, repo_id, data)
        tree = {".gitattributes": {"size": len(data), "sha256": sha256, "oid": git_blob_sha1(data), "lfs": False}}
        head = self.write_commit(type_, repo_id, None, "initial commit", "", tree)
        self.save_meta(type_, repo_id, {"private": private, "createdAt": _now(), "branches": {"main": head},
                                        "tags": {}})

    def resolve(self, type_: str, repo_id: str, revision: str) -> str:
        """A branch, tag or commit sha (full or >= 7-char prefix) -> commit sha."""
        meta = self.meta(type_, repo_id)
        revision = unquote(revision)
        for prefix, kind in (("refs/heads/", "branches"), ("refs/tags/", "tags")):
            if revision.startswith(prefix) and revision[len(prefix):] in meta[kind]:
                return meta[kind][revision[len(prefix):]]
        if revision in meta["branches"]:
            return meta["branches"][revision]
        if revision in meta["tags"]:
            return meta["tags"][revision]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [p.stem for p in (self.path(type_, repo_id) / "commits").glob(f"{revision}*.json")]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def _file_entry(path: str, info: dict, last_commit: dict | None = None) -> dict:
    entry = {"type": "file", "oid": info["oid"] if not info["lfs"] else git_blob_sha1(_pointer(info).encode()),
             "size": info["size"], "path": path}
    if info["lfs"]:
        entry["lfs"] = {"oid": info["sha256"], "size": info["size"], "pointerSize": len(_pointer(info))}
    if last_commit is not None:
        entry["lastCommit"] = last_commit
    return entry


def _pointer(info: dict) -> str:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{info['sha256']}\nsize {info['size']}\n"


def _folder_entry(path: str, last_commit: dict | None = None) -> dict:
    entry = {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
    if last_commit is not None:
        entry["lastCommit"] = last_commit
    return entry


def _card_data(store: RepoStore, type_: str, repo_id: str, tree: dict) -> dict | None:
    info = tree.get("README.md")
    if info is None:
        return None
    text = store.object_path(type_, repo_id, info["sha256"]).read_text(errors="replace")
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
    if not match:
        return None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args) -> None:  # quiet: tests read `hub.requests` instead
        pass

    # ---- plumbing -------------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes | dict | list | None = None, headers: dict | None = None,
              content_type: str = "application/json", head: bool = False) -> None:
        if isinstance(body, (dict, list)):
            payload = json.dumps(body).encode()
        else:
            payload = body or b""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(payload)
        self.server.hub._record(self.command, self.path, status)

    def _error(self, status: int, message: str, code: str | None = None, head: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers, head=head)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _require_write(self) -> None:
        token = self._token()
        if token is None:
            raise HubError(401, "You must be authenticated to write", None)
        if token not in self.server.hub.tokens:
            raise HubError(401, "Invalid credentials in Authorization header", None)

    def _require_read(self, type_: str, repo_id: str) -> dict:
        meta = self.server.hub.store.meta(type_, repo_id)
        if meta["private"] and self._token() not in self.server.hub.tokens:
            raise HubError(401, "Repository not found", "RepoNotFound")  # the Hub hides private repos this way
        return meta

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        segments = [s for s in split.path.split("/") if s]
        head = method == "HEAD"
        body_read = False
        try:
            for pattern, methods, name, handler in _ROUTES:
                match = pattern.fullmatch(split.path)
                if match and method in methods:
                    status = self.server.hub._injected_failure(name)
                    if status is not None:
                        if method in ("POST", "PUT"):
                            self._read_body()
                        raise HubError(status, f"injected failure on {name}")
                    handler(self, method, match, segments)
                    return
            if method in ("POST", "PUT"):
                self._read_body()
                body_read = True
            raise HubError(404, f"no route for {method} {split.path}")
        except HubError as error:
            self._error(error.status, error.message, error.code, head=head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as error:  # a server bug must show up as a 500, not a hung client
            if not body_read:
                self.close_connection = True
            self._error(500, f"{type(error).__name__}: {error}", head=head)


# ---- endpoints ----------------------------------------------------------------------------------------------------
_REPO = r"(?P<type>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)"
_ROUTES: list = []


def _route(pattern: str, methods: tuple[str, ...], name: str):
    def decorate(fn):
        _ROUTES.append((re.compile(pattern), methods, name, fn))
        return fn
    return decorate


def _repo(match) -> tuple[str, str]:
    return REPO_TYPES[match["type"]], unquote(match["repo"])


@_route(r"/api/whoami-v2", ("GET",), "whoami")
def _whoami(h: _Handler, method, match, segments) -> None:
    h._require_write()
    h._send(200, {"type": "user", "name": USER, "fullname": USER, "orgs": [], "isPro": False,
                  "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}}})


@_route(r"/api/validate-yaml", ("POST",), "validate_yaml")
def _validate_yaml(h: _Handler, method, match, segments) -> None:
    payload = json.loads(h._read_body() or b"{}")
    content = payload.get("content", "")
    header = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
    if header:
        try:
            yaml.safe_load(header.group(1))
        except yaml.YAMLError as error:
            h._send(400, {"errors": [{"message": f"invalid YAML: {error}"}], "warnings": []})
            return
    h._send(200, {"errors": [], "warnings": []})


@_route(r"/api/repos/create", ("POST",), "create_repo")
def _create_repo(h: _Handler, method, match, segments) -> None:
    payload = json.loads(h._read_body() or b"{}")
    h._require_write()
    type_ = payload.get("type") or "model"
    namespace = payload.get("organization") or USER
    repo_id = f"{namespace}/{payload['name']}"
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    store = h.server.hub.store
    prefix = "" if type_ == "model" else f"{type_}s/"
    url = f"{h.server.hub.endpoint}/{prefix}{repo_id}"
    with store.lock:
        if store.exists(type_, repo_id):
            # Like the Hub: 409 with the existing repo's url (create_repo(exist_ok=True) reads it).
            h._send(409, {"error": "You already created this model repo", "url": url},
                    {"X-Error-Message": "You already created this repo"})
            return
        store.create(type_, repo_id, private)
    h._send(200, {"url": url, "name": repo_id})


@_route(r"/api/repos/delete", ("DELETE",), "delete_repo")
def _delete_repo(h: _Handler, method, match, segments) -> None:
    payload = json.loads(h._read_body() or b"{}")
    h._require_write()
    type_ = payload.get("type") or "model"
    repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
    store = h.server.hub.store
    with store.lock:
        if not store.exists(type_, repo_id):
            raise HubError(404, "Repository not found", "RepoNotFound")
        shutil.rmtree(store.path(type_, repo_id))
    h._send(200, {})


@_route(rf"/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?", ("GET",), "repo_info")
def _repo_info(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    store = h.server.hub.store
    meta = h._require_read(type_, repo_id)
    sha = store.resolve(type_, repo_id, match["rev"] or "main")
    commit = store.commit(type_, repo_id, sha)
    siblings = []
    for path, info in sorted(commit["tree"].items()):
        sibling = {"rfilename": path, "size": info["size"], "blobId": _file_entry(path, info)["oid"]}
        if info["lfs"]:
            sibling["lfs"] = {"sha256": info["sha256"], "size": info["size"], "pointerSize": len(_pointer(info))}
        siblings.append(sibling)
    card = _card_data(store, type_, repo_id, commit["tree"])
    h._send(200, {"_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id,
                  "author": repo_id.split("/")[0], "sha": sha, "private": meta["private"], "gated": False,
                  "disabled": False, "downloads": 0, "likes": 0, "tags": (card or {}).get("tags", []),
                  "createdAt": meta["createdAt"], "lastModified": commit["date"], "cardData": card,
                  "siblings": siblings, "usedStorage": sum(i["size"] for i in commit["tree"].values())})


@_route(rf"/api/{_REPO}/refs", ("GET",), "refs")
def _refs(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    meta = h._require_read(type_, repo_id)
    h._send(200, {
        "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in meta["branches"].items()],
        "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in meta["tags"].items()],
        "converts": [], "pullRequests": []})


@_route(rf"/api/{_REPO}/tag/(?P<rev>[^/]+)", ("POST", "DELETE"), "tag")
def _tag(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    payload = json.loads(h._read_body() or b"{}")
    h._require_write()
    store = h.server.hub.store
    if method == "DELETE":
        # Versions are immutable here: a deleted tag could be recreated on another commit, i.e. moved.
        raise HubError(403, "Tags on this server are protected and cannot be deleted")
    tag = payload.get("tag")
    if not tag:
        raise HubError(400, "missing tag name")
    with store.lock:
        meta = store.meta(type_, repo_id)
        sha = store.resolve(type_, repo_id, match["rev"])
        if tag in meta["tags"]:
            raise HubError(409, f"Tag {tag} already exists on commit {meta['tags'][tag]}")
        meta["tags"][tag] = sha
        store.save_meta(type_, repo_id, meta)
    h._send(200, {"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": sha})


@_route(rf"/api/{_REPO}/branch/(?P<branch>[^/]+)", ("POST", "DELETE"), "branch")
def _branch(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    payload = json.loads(h._read_body() or b"{}")
    h._require_write()
    branch = unquote(match["branch"])
    store = h.server.hub.store
    with store.lock:
        meta = store.meta(type_, repo_id)
        if method == "DELETE":
            if branch not in meta["branches"] or branch == "main":
                raise HubError(404 if branch not in meta["branches"] else 403, f"cannot delete branch {branch}")
            del meta["branches"][branch]
        else:
            if branch in meta["branches"]:
                raise HubError(409, f"Branch {branch} already exists")
            meta["branches"][branch] = store.resolve(type_, repo_id, payload.get("startingPoint") or "main")
        store.save_meta(type_, repo_id, meta)
    h._send(200, {})


@_route(rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)", ("POST",), "preupload")
def _preupload(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    payload = json.loads(h._read_body() or b"{}")
    h._require_write()
    store = h.server.hub.store
    store.meta(type_, repo_id)
    try:
        tree = store.commit(type_, repo_id, store.resolve(type_, repo_id, match["rev"]))["tree"]
    except HubError:
        tree = {}
    files = []
    for item in payload.get("files", []):
        sample = base64.b64decode(item.get("sample", ""))
        lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] >= LFS_MIN_SIZE or b"\0" in sample
        existing = tree.get(item["path"])
        oid = None
        if existing is not None:
            oid = existing["sha256"] if existing["lfs"] else existing["oid"]
        files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                      "oid": oid})
    h._send(200, {"files": files, "commitOid": None})


@_route(r"/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+?)\.git/info/lfs/objects/batch", ("POST",), "lfs_batch")
def _lfs_batch(h: _Handler, method, match, segments) -> None:
    type_ = REPO_TYPES[match["type"]] if match["type"] else "model"
    repo_id = unquote(match["repo"])
    payload = json.loads(h._read_body() or b"{}")
    h._require_write()
    store = h.server.hub.store
    store.meta(type_, repo_id)
    hub = h.server.hub
    objects = []
    for obj in payload.get("objects", []):
        oid, size = obj["oid"], obj["size"]
        path = store.object_path(type_, repo_id, oid)
        if path.is_file() and path.stat().st_size == size:
            objects.append({"oid": oid, "size": size})  # already stored: the client skips it (resumable)
            continue
        base = f"{hub.endpoint}/lfs-objects/{type_}s/{repo_id}/{oid}"
        objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
            "upload": {"href": f"{base}?size={size}", "header": {}},
            "verify": {"href": f"{base}/verify", "header": {}}}})
    h._send(200, {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")


@_route(rf"/lfs-objects/{_REPO}/(?P<oid>[0-9a-f]{{64}})", ("PUT",), "lfs_upload")
def _lfs_upload(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    hub = h.server.hub
    data = h._read_body()
    with hub.lock:
        hub.bytes_received += len(data)
        over = hub.fail_after_bytes is not None and hub.bytes_received > hub.fail_after_bytes
    if over:
        # The server "fails half way": what arrived past the limit is not stored.
        raise HubError(hub.fail_status, "upload interrupted: storage failure (injected)")
    if hashlib.sha256(data).hexdigest() != match["oid"]:
        raise HubError(400, "uploaded content does not match its sha256 oid")
    hub.store.put_object(type_, repo_id, data)
    h._send(200, b"", content_type="text/plain")


@_route(rf"/lfs-objects/{_REPO}/(?P<oid>[0-9a-f]{{64}})/verify", ("POST",), "lfs_verify")
def _lfs_verify(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    payload = json.loads(h._read_body() or b"{}")
    path = h.server.hub.store.object_path(type_, repo_id, match["oid"])
    if not path.is_file() or path.stat().st_size != payload.get("size"):
        raise HubError(404, "object not found")
    h._send(200, {})


@_route(rf"/api/{_REPO}/commit/(?P<rev>[^/]+)", ("POST",), "commit")
def _commit(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    body = h._read_body()
    h._require_write()
    store = h.server.hub.store
    branch = unquote(match["rev"])
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    if not lines or lines[0].get("key") != "header":
        raise HubError(400, "commit payload must start with a header line")
    header = lines[0]["value"]
    with store.lock:
        meta = store.meta(type_, repo_id)
        if branch not in meta["branches"]:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        head = meta["branches"][branch]
        if header.get("parentCommit") and header["parentCommit"] != head:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(store.commit(type_, repo_id, head)["tree"])
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else \
                    value["content"].encode()
                tree[path] = {"size": len(data), "sha256": store.put_object(type_, repo_id, data),
                              "oid": git_blob_sha1(data), "lfs": False}
            elif key == "lfsFile":
                obj = store.object_path(type_, repo_id, value["oid"])
                if not obj.is_file():
                    raise HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                size = obj.stat().st_size
                tree[path] = {"size": size, "sha256": value["oid"], "oid": value["oid"], "lfs": True}
            elif key == "deletedFile":
                if path not in tree:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del tree[path]
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                for name in [n for n in tree if n.startswith(prefix)]:
                    del tree[name]
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        sha = store.write_commit(type_, repo_id, head, header.get("summary", ""), header.get("description", ""),
                                 tree)
        meta["branches"][branch] = sha
        store.save_meta(type_, repo_id, meta)
    prefix = "" if type_ == "model" else f"{type_}s/"
    h._send(200, {"success": True, "commitOid": sha, "commitUrl": f"{h.server.hub.endpoint}/{prefix}{repo_id}/commit/{sha}",
                  "pullRequestUrl": None})


@_route(rf"/api/{_REPO}/commits/(?P<rev>[^/]+)", ("GET",), "commits")
def _commits(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    h._require_read(type_, repo_id)
    store = h.server.hub.store
    sha, out = store.resolve(type_, repo_id, match["rev"]), []
    while sha:
        commit = store.commit(type_, repo_id, sha)
        out.append({"id": sha, "title": commit["title"], "message": commit["message"], "date": commit["date"],
                    "authors": [{"user": commit["author"]}]})
        sha = commit["parents"][0] if commit["parents"] else None
    h._send(200, out)


def _listing(tree: dict, base: str, recursive: bool) -> list[dict] | None:
    """Entries under `base` ('' = root); None if `base` is neither the root nor a folder."""
    prefix = base.rstrip("/") + "/" if base else ""
    if base and not any(p.startswith(prefix) for p in tree):
        return None
    files, folders = [], set()
    for path, info in sorted(tree.items()):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):].split("/")
        for depth in range(1, len(rest)):
            folder = prefix + "/".join(rest[:depth])
            if recursive or depth == 1:
                folders.add(folder)
        if recursive or len(rest) == 1:
            files.append(_file_entry(path, info))
    return [_folder_entry(f) for f in sorted(folders)] + files


@_route(rf"/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", ("GET",), "tree")
def _tree(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    h._require_read(type_, repo_id)
    store = h.server.hub.store
    sha = store.resolve(type_, repo_id, match["rev"])
    commit = store.commit(type_, repo_id, sha)
    path = unquote(match["path"] or "").strip("/")
    recursive = h.query.get("recursive", ["false"])[0].lower() in ("1", "true")
    entries = _listing(commit["tree"], path, recursive)
    if entries is None:
        if path in commit["tree"]:
            entries = [_file_entry(path, commit["tree"][path])]
        else:
            raise HubError(404, f"{path} does not exist on {match['rev']}", "EntryNotFound")
    if h.query.get("expand", ["false"])[0].lower() in ("1", "true"):
        last = {"id": sha, "title": commit["title"], "date": commit["date"]}
        for entry in entries:
            entry["lastCommit"] = last
    h._send(200, entries)


@_route(rf"/api/{_REPO}/paths-info/(?P<rev>[^/]+)", ("POST",), "paths_info")
def _paths_info(h: _Handler, method, match, segments) -> None:
    type_, repo_id = _repo(match)
    body = h._read_body().decode()
    if h.headers.get("Content-Type", "").startswith("application/json"):
        form = {k: v if isinstance(v, list) else [v] for k, v in json.loads(body or "{}").items()}
    else:
        form = parse_qs(body)
    h._require_read(type_, repo_id)
    store = h.server.hub.store
    sha = store.resolve(type_, repo_id, match["rev"])
    commit = store.commit(type_, repo_id, sha)
    expand = str(form.get("expand", ["false"])[0]).lower() in ("1", "true")
    last = {"id": sha, "title": commit["title"], "date": commit["date"]} if expand else None
    out = []
    for path in form.get("paths", []):
        path = path.strip("/")
        if path in commit["tree"]:
            out.append(_file_entry(path, commit["tree"][path], last))
        elif any(p.startswith(path + "/") for p in commit["tree"]):
            out.append(_folder_entry(path, last))
    h._send(200, out)


@_route(r"/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
        ("GET", "HEAD"), "resolve")
def _resolve(h: _Handler, method, match, segments) -> None:
    type_ = REPO_TYPES[match["type"]] if match["type"] else "model"
    repo_id = unquote(match["repo"])
    head = method == "HEAD"
    store = h.server.hub.store
    h._require_read(type_, repo_id)
    sha = store.resolve(type_, repo_id, match["rev"])
    path = unquote(match["path"])
    info = store.commit(type_, repo_id, sha)["tree"].get(path)
    if info is None:
        raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
    data = store.object_path(type_, repo_id, info["sha256"]).read_bytes()
    headers = {"X-Repo-Commit": sha, "ETag": f'"{info["sha256"] if info["lfs"] else info["oid"]}"',
               "Accept-Ranges": "bytes"}
    if info["lfs"]:
        headers["X-Linked-Etag"] = f'"{info["sha256"]}"'
        headers["X-Linked-Size"] = str(info["size"])
    status = 200
    ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", h.headers.get("Range", "").strip())
    if ranged and data:
        start = int(ranged[1]) if ranged[1] else max(len(data) - int(ranged[2]), 0)
        end = int(ranged[2]) if ranged[1] and ranged[2] else len(data) - 1
        end = min(end, len(data) - 1)
        if start >= len(data):
            h._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head=head)
            return
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        data, status = data[start:end + 1], 206
        h.server.hub._count_download(path)
    else:
        if not head:
            h.server.hub._count_download(path)
    h._send(status, data, headers, content_type="application/octet-stream", head=head)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: "HubServer"


class HubServer:
    """A Hub-compatible server on 127.0.0.1 with a free port, storing repos under `root` (a temp dir by default)."""

    def __init__(self, root: str | os.PathLike | None = None, *, token: str = DEFAULT_TOKEN,
                 fail_after_bytes: int | None = None, fail_status: int = 507,
                 fail_on: dict[str, list[int]] | None = None):
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="hub-server-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = RepoStore(self.root)
        self.token = token
        self.tokens = {token}
        self.fail_after_bytes = fail_after_bytes
        self.fail_status = fail_status
        self.fail_on = {k: list(v) for k, v in (fail_on or {}).items()}
        self.lock = threading.Lock()
        self.bytes_received = 0
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), for assertions
        self.downloads: dict[str, int] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("HubServer is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def heal(self) -> None:
        """Stop injecting failures (the Hub is back)."""
        with self.lock:
            self.fail_after_bytes = None
            self.fail_on = {}

    def calls(self, name_or_fragment: str, method: str | None = None) -> list[tuple[str, str, int]]:
        """Recorded requests whose path contains the fragment (and with this method, if given)."""
        return [r for r in self.requests if name_or_fragment in r[1] and (method is None or r[0] == method)]

    # ---- helpers used by the handler ------------------------------------------------------------------------------
    def _record(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self.requests.append((method, path, status))

    def _count_download(self, path: str) -> None:
        with self.lock:
            self.downloads[path] = self.downloads.get(path, 0) + 1

    def _injected_failure(self, name: str) -> int | None:
        with self.lock:
            queue = self.fail_on.get(name)
            return queue.pop(0) if queue else None

    # ---- direct inspection (no HTTP), for assertions --------------------------------------------------------------
    def tags(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]:
        return dict(self.store.meta(repo_type, repo_id)["tags"]) if self.store.exists(repo_type, repo_id) else {}

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        sha = self.store.resolve(repo_type, repo_id, revision)
        tree = self.store.commit(repo_type, repo_id, sha)["tree"]
        return {p: self.store.object_path(repo_type, repo_id, i["sha256"]).read_bytes() for p, i in tree.items()}


@contextmanager
def hub_environment(endpoint: str, token: str | None, cache_dir: str | os.PathLike,
                    offline: bool = False) -> Iterator[None]:
    """Point `huggingface_hub` (and `datasets`, if imported) at `endpoint` with `token`, a fresh cache, no Xet.

    Sets HF_ENDPOINT / HF_TOKEN / HF_HOME / HF_HUB_CACHE / HF_HUB_DISABLE_XET in the environment (for subprocesses
    and for code that reads them at call time) and patches the constants the libraries read once at import.
    """
    import sys

    cache_dir = Path(cache_dir)
    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(cache_dir / "hf_home"), "HF_HUB_CACHE": str(cache_dir / "hub"),
           "HF_DATASETS_CACHE": str(cache_dir / "datasets"), "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_OFFLINE": "1" if offline else "0", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    if token is not None:
        env["HF_TOKEN"] = token
    saved_env = {k: os.environ.get(k) for k in [*env, "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]}
    os.environ.update(env)
    if token is None:
        os.environ.pop("HF_TOKEN", None)
    os.environ.pop("HUGGING_FACE_HUB_TOKEN", None)

    from huggingface_hub import constants

    patches = {
        (constants, "ENDPOINT"): endpoint,
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE"): endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        (constants, "HF_HUB_DISABLE_XET"): True,
        (constants, "HF_HUB_OFFLINE"): offline,
        (constants, "HF_HOME"): env["HF_HOME"],
        (constants, "HF_HUB_CACHE"): env["HF_HUB_CACHE"],
        (constants, "HF_TOKEN_PATH"): str(cache_dir / "hf_home" / "token"),
        (constants, "HF_STORED_TOKENS_PATH"): str(cache_dir / "hf_home" / "stored_tokens"),
    }
    if "datasets" in sys.modules:
        import datasets.config as dconfig

        patches.update({(dconfig, "HF_ENDPOINT"): endpoint,
                        (dconfig, "HUB_DATASETS_URL"): endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
                        (dconfig, "HF_HUB_OFFLINE"): offline,
                        (dconfig, "HF_DATASETS_OFFLINE"): offline,
                        (dconfig, "HF_DATASETS_CACHE"): Path(env["HF_DATASETS_CACHE"])})
    saved = {key: getattr(*key) for key in patches if hasattr(*key)}
    for (module, name), value in patches.items():
        setattr(module, name, value)
    _reset_hub_clients()
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reset_hub_clients()


def _reset_hub_clients() -> None:
    """Forget cached HfFileSystem instances (they keep their endpoint and listings) and the HTTP session."""
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()
    try:
        from huggingface_hub.utils import _http

        if getattr(_http, "_GLOBAL_CLIENT", None) is not None:
            _http._GLOBAL_CLIENT.close()
            _http._GLOBAL_CLIENT = None
    except Exception:  # a private detail of huggingface_hub: best effort only
        pass
