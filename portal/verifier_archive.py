"""The `veridict-verify` source as a reproducible .tar.gz, made from the installed package."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import veridict_verify

DISTRIBUTION = "veridict-verify"


@dataclass(frozen=True)
class Archive:
    filename: str
    content: bytes
    version: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def _source_files() -> tuple[Path, list[Path]]:
    """The distribution's folder and the files an sdist needs: its pyproject, README and
    modules. The package is installed from ./verifier (editable), so its source is on disk."""
    package = Path(veridict_verify.__file__).resolve().parent
    root = package.parent
    files = [root / "pyproject.toml", root / "README.md"]
    files += sorted(package.glob("*.py"))
    return root, [path for path in files if path.is_file()]


def verifier_archive() -> Archive:
    root, files = _source_files()
    stamp = tuple((str(path), path.stat().st_mtime_ns) for path in files)
    return _archive_build(stamp)


@functools.lru_cache(maxsize=4)
def _archive_build(stamp: tuple[tuple[str, int], ...]) -> Archive:
    """Same bytes for the same sources (fixed times, owners and order), so anyone can rebuild
    it from the repository and compare the SHA-256 shown on the keys page."""
    root, files = _source_files()
    version = metadata.version(DISTRIBUTION)
    prefix = f"veridict_verify-{version}"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{prefix}/{path.relative_to(root).as_posix()}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return Archive(f"{prefix}.tar.gz", compressed.getvalue(), version)
