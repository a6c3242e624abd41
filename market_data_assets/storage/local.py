"""``LocalStore``: the object store on a local folder (the embedded default ``./data``)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from market_data_assets.storage.base import ObjectInfo, ObjectStore, check_relative_path, counted


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self._root = Path(root).expanduser().resolve()
        self.root = str(self._root)

    def _abs(self, path: str) -> Path:
        return self._root / check_relative_path(path)

    def uri(self, path: str) -> str:
        return str(self._abs(path))

    def io_threads(self, requested: int) -> int:
        """No more than the cores: a local file operation is CPU work (Parquet encoding, syscalls),
        and threads beyond the cores only contend for the GIL (measured: more CPU, no less wall)."""
        return max(1, min(requested, os.cpu_count() or 1))

    @counted
    def put_file(self, local_path: Path, path: str, *, move: bool = False) -> None:
        dest = self._abs(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex}")
        try:
            if move:
                shutil.move(str(local_path), tmp)
            else:
                shutil.copyfile(local_path, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    @counted
    def put_bytes(self, data: bytes | pa.Buffer, path: str) -> None:
        """Written under a temporary name in the destination folder, then renamed over ``path``."""
        dest = self._abs(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    @counted
    def get_bytes(self, path: str) -> bytes:
        src = self._abs(path)
        if not src.is_file():
            raise FileNotFoundError(f"{self.uri(path)} does not exist")
        return src.read_bytes()

    @counted
    def read_parquet(self, path: str, columns: list[str] | None = None) -> pa.Table:
        src = self._abs(path)
        if not src.is_file():
            raise FileNotFoundError(f"{self.uri(path)} does not exist")
        with pq.ParquetFile(src) as f:
            return f.read(columns=columns)

    @counted
    def exists(self, path: str) -> bool:
        return self._abs(path).is_file()

    @counted
    def list(self, prefix: str) -> list[ObjectInfo]:
        # Scan only the deepest folder the prefix names, filter names before any stat call, and
        # everything below a matching folder matches: the hot path for a day folder of 1,000s of files.
        folder, _, name_prefix = prefix.rpartition("/")
        out: list[ObjectInfo] = []
        stack = [(str(self._root / folder) if folder else str(self._root), folder, name_prefix)]
        while stack:
            abs_dir, rel_dir, wanted = stack.pop()
            try:
                entries = os.scandir(abs_dir)
            except (FileNotFoundError, NotADirectoryError):
                continue
            base = f"{rel_dir}/" if rel_dir else ""
            with entries:
                for entry in entries:
                    name = entry.name
                    if not name.startswith(wanted) or name.startswith("."):
                        continue  # outside the prefix, or temporary/staging files
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, base + name, ""))
                    else:
                        out.append(ObjectInfo(base + name, entry.stat().st_size))
        out.sort(key=lambda o: o.path)
        return out

    @counted
    def delete(self, path: str) -> None:
        self._abs(path).unlink(missing_ok=True)

    def staging_dir(self) -> Path:
        d = self._root / ".staging"
        d.mkdir(parents=True, exist_ok=True)
        return d
