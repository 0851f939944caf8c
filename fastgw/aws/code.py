"""Where a template's function code comes from when it is not a plain folder: a `.zip` CodeUri unpacked once into a
cache folder named by its content's hash, and inline code (`InlineCode`, `Code.ZipFile`) written into one."""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

from fastgw.config.errors import ConfigError


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "fastgw" / "sam"


def unzip(path: Path, source: str, at: str) -> Path:
    """A CodeUri .zip unpacked once into the cache, in a folder named by its content's hash (a changed zip is a new
    folder; an unchanged one is not unpacked again)."""
    data = path.read_bytes()
    folder = cache_dir() / hashlib.sha256(data).hexdigest()[:32]
    if (folder / ".complete").is_file():
        return folder
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    try:
        with zipfile.ZipFile(path) as zf:
            root = tmp.resolve()
            for member in zf.infolist():
                target = (tmp / member.filename).resolve()
                if root != target and root not in target.parents:
                    raise ConfigError(source, at, f"{path.name}: {member.filename!r} would unpack outside its folder")
            zf.extractall(tmp)
    except zipfile.BadZipFile as exc:
        raise ConfigError(source, at, f"{path.name} is not a valid .zip: {exc}") from None
    (tmp / ".complete").write_text(str(path))
    try:
        tmp.rename(folder)
    except OSError:  # another process unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def cached_files(key: str, files: dict[str, str]) -> Path:
    """Inline code (InlineCode, Code.ZipFile) written once into the cache."""
    folder = cache_dir() / ("inline-" + hashlib.sha256(key.encode()).hexdigest()[:32])
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if not (folder / name).is_file() or (folder / name).read_text() != text:
            (folder / name).write_text(text)
    return folder
