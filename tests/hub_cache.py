"""A Hugging Face hub cache written offline, laid out as `huggingface_hub` writes it (models by name).

huggingface_hub has no public offline way to add a local directory to its cache (every writer downloads), so
the layout is written here as the library documents it (https://huggingface.co/docs/huggingface_hub/guides/
manage-cache) and as 2.x writes it:

    <cache>/models--org--name/
        blobs/<git sha1 of the file, or sha256 for LFS files (weights)>
        snapshots/<40-hex commit>/<repo paths, each a relative symlink to ../../blobs/...>
        refs/main                 the newest commit, no newline
        trees/<commit>.json       the commit's file listing (huggingface_hub >= 2 checks snapshots against it)

`<cache>` is HF_HUB_CACHE, i.e. `$HF_HOME/hub` by default. tests/shared/test_hub.py checks that
huggingface_hub (`scan_cache_dir`, `snapshot_download(local_files_only=True)`) and transformers read it back.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")  # what the hub stores in LFS/Xet (as hashed there)


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_hub_cache(
    model_dir: Path, cache_dir: Path, repo_id: str, revisions: int = 1, *, tree_listing: bool = True
) -> list[str]:
    """Cache `model_dir` as hub model `repo_id` in `cache_dir` (HF_HUB_CACHE), in `revisions` commits.

    Commit i (0-based) holds the model's files plus `revision.json` = {"revision": i}, so tests can tell the
    snapshots apart; unchanged files share blobs. refs/main points at the newest. Returns the commit shas,
    oldest first (newest last). `tree_listing=False` leaves out trees/ as huggingface_hub < 2 did."""
    org_name = repo_id.split("/")
    if len(org_name) != 2:
        raise ValueError(f"repo_id must be 'org/name', not {repo_id!r}")
    repo = Path(cache_dir) / ("models--" + "--".join(org_name))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    base = {
        p.relative_to(model_dir).as_posix(): p.read_bytes()
        for p in sorted(model_dir.rglob("*"))
        if p.is_file()
    }
    commits: list[str] = []
    for i in range(revisions):
        files = {**base, "revision.json": json.dumps({"revision": i}).encode()}
        listing: dict[str, dict] = {}
        digest = hashlib.sha1(f"{repo_id}:{i}".encode())
        for rel, data in sorted(files.items()):
            git_sha = _git_blob_sha1(data)
            if rel.endswith(LFS_SUFFIXES):
                blob = hashlib.sha256(data).hexdigest()
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{blob}\nsize {len(data)}\n"
                info = {"size": len(data), "blob_id": _git_blob_sha1(pointer.encode())}
                info |= {"lfs_sha256": blob, "lfs_size": len(data)}
            else:
                blob, info = git_sha, {"size": len(data), "blob_id": git_sha}
            listing[rel] = info
            digest.update(f"{rel}:{blob}".encode())
            blob_path = repo / "blobs" / blob
            if not blob_path.exists():
                blob_path.write_bytes(data)
        commit = digest.hexdigest()
        snapshot = repo / "snapshots" / commit
        for rel, info in listing.items():
            link = snapshot / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            blob = info.get("lfs_sha256") or info["blob_id"]
            link.unlink(missing_ok=True)
            link.symlink_to(os.path.relpath(repo / "blobs" / blob, link.parent))
        if tree_listing:
            (repo / "trees").mkdir(exist_ok=True)
            (repo / "trees" / f"{commit}.json").write_text(
                json.dumps({"format_version": 1, "files": listing}, indent=1)
            )
        commits.append(commit)
    (repo / "refs" / "main").write_text(commits[-1])
    return commits
