"""Official files of the data sets: where they come from, their checksums, and a careful downloader.

A download goes to ``<name>.part`` next to its destination, is checked against
the official checksum and only then renamed into place, so a broken transfer
never leaves a file that looks complete.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


class DownloadError(OSError):
    """No URL of a file could be fetched, or what came back failed its checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """One official file of a data set.

    ``md5`` / ``sha256`` are checksums of the file as published;
    ``payload_sha256`` is the SHA-256 of the decompressed content of a ``.gz``
    file (gzip re-packing changes the ``.gz`` bytes, not the data). ``split``
    is ``"train"``, ``"test"`` or ``None`` when the file serves both.
    """

    name: str
    urls: tuple[str, ...] = ()
    md5: str | None = None
    sha256: str | None = None
    payload_sha256: str | None = None
    split: str | None = None
    note: str = field(default="", compare=False)

    def checksum_text(self) -> str:
        """Short human-readable checksum, e.g. ``md5 f68b3c...``."""
        if self.md5:
            return f"md5 {self.md5}"
        if self.sha256:
            return f"sha256 {self.sha256}"
        return ""


def file_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def gzip_payload_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of the decompressed content of a gzip file."""
    h = hashlib.new(algorithm)
    with gzip.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, spec: RemoteFile, gzipped: bool | None = None) -> bool | None:
    """Whether ``path`` matches ``spec``: its published checksum or, for gzip, the payload's.

    Returns ``None`` when ``spec`` has no checksum to compare with. A file
    without the ``.gz`` suffix is compared with ``payload_sha256`` (the
    decompressed official file). ``gzipped`` overrides the suffix test.
    """
    path = Path(path)
    if spec.md5 is None and spec.sha256 is None and spec.payload_sha256 is None:
        return None
    if gzipped is None:
        gzipped = path.suffix == ".gz"
    compressed_like_official = gzipped == spec.name.endswith(".gz")
    if compressed_like_official:
        if spec.md5 and file_digest(path, "md5") == spec.md5:
            return True
        if spec.sha256 and file_digest(path, "sha256") == spec.sha256:
            return True
    if spec.payload_sha256:
        try:
            digest = gzip_payload_digest(path) if gzipped else file_digest(path)
        except (OSError, EOFError, zlib.error):
            return False
        return digest == spec.payload_sha256
    return False


def download_file(spec: RemoteFile, folder: Path, timeout: float = 60.0, progress: bool = True) -> Path:
    """Fetch ``spec`` into ``folder`` from the first URL that works and verify it.

    Raises :class:`DownloadError` when every URL fails (no network, HTTP error)
    or when the downloaded bytes fail the checksum.
    """
    folder = Path(folder)
    dest = folder / spec.name
    if not spec.urls:
        raise DownloadError(f"{spec.name} has no download URL")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {folder} to download {spec.name} into: {exc}") from None
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    for url in spec.urls:
        try:
            _fetch(url, part, timeout, progress)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            part.unlink(missing_ok=True)
            continue
        if verify_file(part, spec, gzipped=spec.name.endswith(".gz")) is False:
            part.unlink(missing_ok=True)
            errors.append(f"{url}: downloaded file fails its checksum ({spec.checksum_text()})")
            continue
        os.replace(part, dest)
        return dest
    raise DownloadError(f"could not download {spec.name}:\n  " + "\n  ".join(errors))


def _fetch(url: str, dest: Path, timeout: float, progress: bool) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "noveltylab"})
    with urllib.request.urlopen(request, timeout=timeout) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name.removesuffix(".part"),
                           disable=None, leave=False)
            except ImportError:  # pragma: no cover - tqdm is a dependency
                bar = None
        try:
            while True:
                block = resp.read(1 << 20)
                if not block:
                    break
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
        if total is not None and out.tell() != total:
            raise OSError(f"connection closed after {out.tell()} of {total} bytes")


def download_all(files: Sequence[RemoteFile], folder: Path, **kwargs) -> list[Path]:
    """Download several files into ``folder`` (see :func:`download_file`)."""
    return [download_file(f, folder, **kwargs) for f in files]


__all__ = ["DownloadError", "RemoteFile", "download_all", "download_file", "file_digest",
           "gzip_payload_digest", "verify_file"]
