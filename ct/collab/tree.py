"""What of a directory is shared: ``.gitignore`` rules, binary files, caps, path rules.

Blocking file-system reads (the caller runs :func:`scan` in a thread for a big tree).
Paths are relative POSIX paths as the workspace's ``files`` map keys them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

import pathspec

MAX_PATH_BYTES = 1024
DEFAULT_MAX_FILE_BYTES = 1024 * 1024
DEFAULT_MAX_WORKSPACE_BYTES = 32 * 1024 * 1024
TEMP_PREFIX = ".ct-tmp-"  # our atomic writes' temporary files: never shared
ALWAYS_SKIPPED = frozenset({".git"})
UNSHARED_REASONS = ("binary", "too-large", "workspace-full")


def validate_path(path: str) -> str | None:
    """Why ``path`` may not be a workspace path, or ``None`` when it may."""
    if not isinstance(path, str) or not path:
        return "empty path"
    if "\x00" in path:
        return "NUL in path"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"path over {MAX_PATH_BYTES} bytes"
    if path.startswith("/") or "\\" in path:
        return "not a relative POSIX path"
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            return "empty, '.' or '..' segment"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "path is not valid Unicode"
    return None


def is_skipped_name(name: str) -> bool:
    """Names never shared whatever ``.gitignore`` says (``.git``, our temporary files)."""
    return name in ALWAYS_SKIPPED or name.startswith(TEMP_PREFIX)


def decode_text(data: bytes) -> str | None:
    """The text of a shareable file, ``None`` for a binary one (a NUL byte or not UTF-8)."""
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Ignorer:
    """``.gitignore`` rules of a tree, nested files included (git's wildmatch semantics)."""

    def __init__(self, root: str):
        self.root = root
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}

    def reload(self) -> None:
        self._specs.clear()

    def _spec(self, directory: str) -> pathspec.GitIgnoreSpec | None:
        if directory not in self._specs:
            name = os.path.join(self.root, directory, ".gitignore")
            try:
                with open(name, encoding="utf-8", errors="replace") as f:
                    lines = f.read(1024 * 1024).splitlines()
                self._specs[directory] = pathspec.GitIgnoreSpec.from_lines(lines)
            except (OSError, ValueError):
                self._specs[directory] = None
        return self._specs[directory]

    def ignored(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` (or a directory above it) is skipped."""
        segments = path.split("/")
        if any(is_skipped_name(s) for s in segments):
            return True
        for depth in range(1, len(segments) + 1):  # an ignored parent hides everything below
            if self._matches(segments[:depth], is_dir or depth < len(segments)):
                return True
        return False

    def _matches(self, segments: list[str], is_dir: bool) -> bool:
        decision = False
        for depth in range(len(segments)):
            spec = self._spec("/".join(segments[:depth]))
            if spec is None:
                continue
            rel = "/".join(segments[depth:]) + ("/" if is_dir else "")
            result = spec.check_file(rel).include
            if result is not None:
                decision = result
        return decision


@dataclass
class Scan:
    """What :func:`scan` found: shared texts and the files listed but not shared."""

    files: dict[str, str] = field(default_factory=dict)
    unshared: list[dict] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    @property
    def shared_bytes(self) -> int:
        return sum(len(t.encode("utf-8")) for t in self.files.values())


def scan(root: str, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
         max_workspace_bytes: int = DEFAULT_MAX_WORKSPACE_BYTES,
         ignorer: Ignorer | None = None, under: str = "") -> Scan:
    """Walk ``root`` (or its subdirectory ``under``) in path order."""
    ignorer = ignorer or Ignorer(root)
    result = Scan()
    total = 0
    real_root = os.path.realpath(root)
    for path in walk(root, real_root, under, ignorer, result):
        full = os.path.join(root, path)
        try:
            size = os.stat(full).st_size
        except OSError:
            continue
        if size > max_file_bytes:
            result.unshared.append({"path": path, "size": size, "reason": "too-large"})
            continue
        try:
            with open(full, "rb") as f:
                data = f.read(max_file_bytes + 1)
        except OSError:
            continue
        text = decode_text(data)
        if text is None:
            result.unshared.append({"path": path, "size": len(data), "reason": "binary"})
            continue
        if len(data) > max_file_bytes:
            result.unshared.append({"path": path, "size": len(data), "reason": "too-large"})
            continue
        if total + len(data) > max_workspace_bytes:
            result.unshared.append({"path": path, "size": len(data), "reason": "workspace-full"})
            continue
        total += len(data)
        result.files[path] = text
    return result


def walk(root: str, real_root: str, under: str, ignorer: Ignorer, result: Scan):
    """File paths under ``under`` that ``ignorer`` does not hide, in path order; refused
    paths (bad names, symbolic links leaving the root) go to ``result.refused``."""
    stack = [under]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(os.path.join(root, directory)), key=lambda e: e.name,
                             reverse=True)
        except OSError:
            continue
        files, dirs = [], []
        for entry in entries:
            path = f"{directory}/{entry.name}" if directory else entry.name
            why = validate_path(path)
            if why is not None:
                result.refused.append((path, why))
                continue
            try:
                if entry.is_symlink():
                    if not within(real_root, os.path.realpath(entry.path)) or entry.is_dir():
                        result.refused.append((path, "symbolic link to a directory or "
                                                     "out of the shared directory"))
                        continue
                is_dir = entry.is_dir()
                if not is_dir and not entry.is_file():
                    continue
            except OSError:
                continue
            if ignorer.ignored(path, is_dir):
                continue
            (dirs if is_dir else files).append(path)
        yield from reversed(files)
        stack.extend(dirs)  # reversed order on the stack: visited in name order


def within(real_root: str, real_path: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip("/") + "/")


def safe_target(root: str, path: str) -> str | None:
    """Where ``path`` lives on disk, ``None`` when it may not be written (bad path, or a
    symbolic link on the way that leaves ``root``)."""
    if validate_path(path) is not None or any(is_skipped_name(s) for s in path.split("/")):
        return None
    full = os.path.join(root, *path.split("/"))
    real_root = os.path.realpath(root)
    if not within(real_root, os.path.realpath(os.path.dirname(full))):
        return None
    try:
        mode = os.lstat(full).st_mode
        if stat.S_ISLNK(mode) and not within(real_root, os.path.realpath(full)):
            return None
        if stat.S_ISDIR(mode):
            return None
    except FileNotFoundError:
        pass
    except OSError:
        return None
    return full
