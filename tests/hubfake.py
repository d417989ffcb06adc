"""A Hub repo in memory, standing in for the network calls of `huggingface_hub.HfApi` and nothing else.

`datasets.Dataset.push_to_hub`, `DatasetCard.push_to_hub` and `HfApi.upload_folder` run as they are; the
HfApi methods that talk to the Hub (create_repo, repo_info, list_repo_tree, get_paths_info,
preupload_lfs_files, create_commit) are replaced by ones that keep the committed files here, and the two
POSTs to the Hub's card validator (`RepoCard.validate`, `HfApi._validate_yaml`) by ones that record the
card. `upload_folder` is kept on its one-commit path (the one it takes without hf_xet), since the streamed
xet pipeline talks to the Hub's storage directly. The repo starts empty. `write_to(folder)` lays the files
out on disk, so a test can open what would be on the Hub with the same libraries a user would
(`datasets.load_dataset`, `ModelCard.load`).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from unittest import mock

from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.repocard import RepoCard


class FakeHub:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.repos: list[tuple[str, dict]] = []
        self.tokens: list[str | None] = []
        self.commits: list[dict] = []
        self.validated: list[str] = []
        self.fail = fail  # raised by create_commit, as the Hub refusing the upload

    # -- the replaced network calls ---------------------------------------------------------------------
    def create_repo(self, api: HfApi, repo_id: str, **kwargs):
        self.repos.append((repo_id, kwargs))
        self.tokens.append(api.token)
        kind = kwargs.get("repo_type") or "model"
        prefix = "" if kind == "model" else f"{kind}s/"
        return mock.Mock(repo_id=repo_id, url=f"https://huggingface.co/{prefix}{repo_id}",
                         __str__=lambda self: self.url)  # fmt: skip

    def repo_info(self, api: HfApi, repo_id: str, **kwargs):
        return mock.Mock(id=repo_id, sha="0" * 40)

    def list_repo_tree(self, api: HfApi, repo_id: str, path_in_repo: str | None = None, **kwargs):
        if path_in_repo:  # the Hub answers 404 for a folder that is not there
            raise EntryNotFoundError(f"{path_in_repo} does not exist in {repo_id}")
        return iter([])

    def get_paths_info(self, api: HfApi, repo_id: str, paths, **kwargs):
        return []

    def preupload_lfs_files(self, api: HfApi, repo_id: str, additions, **kwargs):
        for op in additions:  # datasets deletes the shard file once it is "uploaded": read it now
            self.files[op.path_in_repo] = _content(op.path_or_fileobj)
            op._upload_mode = "lfs"

    def validate(self, card: RepoCard, repo_type: str | None = None) -> None:
        self.validated.append(str(card))

    def _validate_yaml(self, api: HfApi, content: str, **kwargs) -> None:
        self.validated.append(content)

    def create_commit(self, api: HfApi, repo_id: str, operations, commit_message: str = "", **kwargs):
        self.tokens.append(kwargs.get("token") or api.token)
        if self.fail is not None:
            raise self.fail
        names = []
        for op in operations:
            if hasattr(op, "path_or_fileobj"):
                if op.path_in_repo not in self.files or not getattr(op, "_upload_mode", None):
                    self.files[op.path_in_repo] = _content(op.path_or_fileobj)
                names.append(op.path_in_repo)
        self.commits.append({"repo_id": repo_id, "message": commit_message, "files": names, **kwargs})
        kind = kwargs.get("repo_type") or "model"
        prefix = "" if kind == "model" else f"{kind}s/"
        url = f"https://huggingface.co/{prefix}{repo_id}/commit/{len(self.commits):040d}"
        return CommitInfo(commit_url=url, commit_message=commit_message, commit_description="",
                          oid=f"{len(self.commits):040d}", pr_url=None)  # fmt: skip

    # -- using it ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def patched(self):
        names = ("create_repo", "repo_info", "list_repo_tree", "get_paths_info", "preupload_lfs_files",
                 "create_commit", "_validate_yaml")  # fmt: skip
        with contextlib.ExitStack() as stack:
            for name in names:
                fake = getattr(self, name)
                stack.enter_context(mock.patch.object(HfApi, name, autospec=True, side_effect=fake))
            stack.enter_context(
                mock.patch.object(RepoCard, "validate", autospec=True, side_effect=self.validate)
            )
            stack.enter_context(mock.patch("huggingface_hub.hf_api.is_xet_available", return_value=False))
            yield self

    def write_to(self, folder: Path) -> Path:
        for name, data in self.files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return folder


def _content(source) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    if isinstance(source, io.BufferedIOBase | io.RawIOBase) or hasattr(source, "read"):
        data = source.read()
        source.seek(0)
        return data
    raise TypeError(f"cannot read {type(source).__name__}")
