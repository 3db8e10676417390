"""An attacker's clone that forges run refs with plain git (`hash-object`, `mktree`,
`commit-tree`, `update-ref`) and force-pushes them: what anyone with push access can do,
without gitexp's help."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MALLORY = "Mallory <mallory@evil.example>"
IDENTITY = {"GIT_AUTHOR_NAME": "Mallory", "GIT_AUTHOR_EMAIL": "mallory@evil.example",
            "GIT_COMMITTER_NAME": "Mallory", "GIT_COMMITTER_EMAIL": "mallory@evil.example"}


@dataclass(frozen=True)
class Link:
    """A symlink entry (mode 120000) pointing at `target`."""
    target: str


Files = dict[str, "bytes | str | Link"]


class Attacker:
    def __init__(self, repo: Path) -> None:
        self.repo = repo

    def git(self, *args: str, data: bytes | None = None) -> str:
        proc = subprocess.run(["git", *args], cwd=self.repo, input=data, capture_output=True,
                              env={**os.environ, **IDENTITY}, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"git {args[0]} failed: {proc.stderr.decode()}")
        return proc.stdout.decode(errors="surrogateescape").strip()

    def blob(self, data: bytes | str) -> str:
        raw = data.encode() if isinstance(data, str) else data
        return self.git("hash-object", "-w", "--stdin", data=raw)

    def tree(self, files: Files) -> str:
        """A tree of `files` (paths with `/` become subtrees), one `git mktree` per level."""
        nested: dict[str, Any] = {}
        for path, content in files.items():
            *dirs, name = path.split("/")
            node = nested
            for d in dirs:
                node = node.setdefault(d, {})
            node[name] = content
        return self._mktree(nested)

    def _mktree(self, node: dict[str, Any]) -> str:
        lines = []
        for name, content in sorted(node.items()):
            if isinstance(content, dict):
                lines.append(f"040000 tree {self._mktree(content)}\t{name}")
            elif isinstance(content, Link):
                lines.append(f"120000 blob {self.blob(content.target)}\t{name}")
            else:
                lines.append(f"100644 blob {self.blob(content)}\t{name}")
        return self.git("mktree", data=("\n".join(lines) + "\n").encode())

    def commit(self, tree: str, message: str, parents: list[str]) -> str:
        args = [a for p in parents for a in ("-p", p)]
        return self.git("commit-tree", tree, *args, "-F", "-", data=message.encode())

    def forge(self, run_id: str, *, record: dict[str, Any] | None = None,
              result: dict[str, Any] | None = None, code: Files | None = None,
              results: Files | None = None, ref: str | None = None,
              parent: str | None = None, body: str | None = None) -> str:
        """A run ref as gitexp would write it (snapshot commit S, and with `result` a results
        commit R on top), but with whatever the attacker likes in it. `body` replaces the
        JSON of every commit; `ref` replaces `refs/experiments/<run_id>`."""
        rec = record if record is not None else base_record(run_id)
        code = code if code is not None else {"train.py": "print('attacker')\n"}
        base = parent or self.git("rev-parse", "main")
        title = f"gitexp run {run_id}"
        snap_body = body or json.dumps({"schema": 1, "record": rec})
        commit = self.commit(self.tree(code), f"{title}\n\n{snap_body}\n", [base])
        if result is not None:
            full = {"schema": 1, "record": rec, "result": result}
            files: Files = {**code, ".gitexp-results/record.json": json.dumps(rec),
                            ".gitexp-results/result.json": json.dumps(result),
                            ".gitexp-results/log.txt": "forged log\n", **(results or {})}
            commit = self.commit(self.tree(files),
                                 f"{title}: {result.get('status')}\n\n"
                                 f"{body or json.dumps(full)}\n", [commit])
        self.git("update-ref", ref or f"refs/experiments/{run_id}", commit)
        return commit

    def publish(self, remote: Path, *refs: str) -> None:
        """Force-push `refs` (full names) to the bare repository `remote`, made if need be."""
        if not remote.exists():
            subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True,
                           capture_output=True)
        self.git("push", "-q", "--force", str(remote), *(f"+{r}:{r}" for r in refs))


def base_record(run_id: str, **fields: Any) -> dict[str, Any]:
    """A plausible finished-run record from someone else's clone."""
    rec: dict[str, Any] = {
        "id": run_id, "argv": ["python", "train.py"], "cwd": "", "base": None,
        "branch": "main", "user": MALLORY, "launched_at": time.time() - 120,
        "target": "local", "backend": "local", "store": "file:///nonexistent/gitexp-store",
        "env": {"python": "3.11.7", "platform": "Linux", "packages": None, "variables": {}},
        "data": None, "params": {}, "name": None, "rerun_of": None, "sweep": None, "outs": []}
    rec.update(fields)
    return rec


def base_result(**fields: Any) -> dict[str, Any]:
    now = time.time()
    res: dict[str, Any] = {"status": "succeeded", "exit_code": 0, "started_at": now - 100,
                           "ended_at": now - 90, "host": "evil-host", "metrics": {},
                           "error": None, "outputs": {}, "check": None}
    res.update(fields)
    return res
