"""A study's folder on its storage (a local folder or a pyarrow URI such as ``s3://bucket/studies``).

:meth:`StudyFolder.open` resolves ``--storage`` and ``--name`` and proves the folder can be
written, leaving nothing behind; :meth:`StudyFolder.create` makes it, with ``study.yaml`` and
``provenance.json``, once every other check has passed; :meth:`StudyFolder.take_back` removes
what ``create`` made when the study then fails to start. Every failure is a :class:`StudyError`
naming the path.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from .schema import StudyError
from .store import join_uri, resolve_storage

__all__ = ["StudyFolder", "STUDY_YAML", "META_JSON", "OPTUNA_DB"]

STUDY_YAML = "study.yaml"
META_JSON = "provenance.json"
OPTUNA_DB = "optuna.db"  #: the study's default Optuna storage, a SQLite file (study.optuna_store)
_PROBE = ".write-test"
_OUR_FILES = {STUDY_YAML, META_JSON, OPTUNA_DB, _PROBE}


@dataclass
class StudyFolder:
    """Where one study lives: ``path`` inside the filesystem ``fs``, and ``uri`` (what Ray and the
    messages get) under ``root_uri`` (the ``--storage`` location)."""

    fs: pafs.FileSystem
    path: str
    uri: str
    root_uri: str
    name: str

    @classmethod
    def open(cls, storage: str, name: str | None, resume: bool, spec_name: str) -> StudyFolder:
        """The study folder ``--name`` (default ``<spec_name>-<date-time>``; with ``resume`` the newest
        ``<spec_name>-*``) under ``storage``, checked to be writable (new, or an earlier study to resume)."""
        try:
            fs, root, root_uri = resolve_storage(storage)
        except (ValueError, OSError) as e:  # pyarrow.ArrowInvalid is a ValueError
            raise StudyError(
                f"--storage {storage!r}: {' '.join(str(e).split())}; expected a folder or a URI such "
                "as s3://bucket/studies"
            ) from None
        name = _study_name(spec_name, name, resume, fs, root)
        folder = cls(fs, f"{root}/{name}", join_uri(root_uri, name), root_uri, name)
        folder._check_writable(resume, storage)
        return folder

    def create(self, study_yaml: str, meta: dict[str, Any]) -> str | None:
        """Make the folder with ``study.yaml`` and ``provenance.json``; the highest folder this made
        (for :meth:`take_back`), None when it existed."""
        top = _first_missing(self.fs, self.path)
        self.fs.create_dir(self.path, recursive=True)
        with self.fs.open_output_stream(f"{self.path}/{STUDY_YAML}") as f:
            f.write(study_yaml.encode())
        with self.fs.open_output_stream(f"{self.path}/{META_JSON}") as f:
            f.write(json.dumps(meta, indent=1).encode())
        return top

    def read_meta(self) -> dict[str, Any]:
        """The ``provenance.json`` an earlier run of this study wrote ({} when there is none)."""
        try:
            with self.fs.open_input_stream(f"{self.path}/{META_JSON}") as f:
                meta = json.loads(f.read().decode())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def take_back(self, top: str | None) -> None:
        """Delete ``top`` (a folder :meth:`create` made) when it holds nothing but this module's files."""
        if not top:
            return
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(top, recursive=True, allow_not_found=True))
            if all(i.type == pafs.FileType.Directory or i.base_name in _OUR_FILES for i in infos):
                self.fs.delete_dir(top)
        except OSError:
            pass  # best effort: the error being reported matters more

    def _check_writable(self, resume: bool, storage: str) -> None:
        """Fail unless the study folder can be written; the probe's folders are removed again."""
        storage = storage or self.root_uri
        try:
            info = self.fs.get_file_info(self.path)
        except OSError as e:
            raise StudyError(
                f"--storage {storage}: cannot read {self.uri} ({_os_reason(e)}); "
                "expected a readable, writable folder or URI"
            ) from None
        top = None
        if resume:
            if (
                info.type != pafs.FileType.Directory
                or self.fs.get_file_info(f"{self.path}/{STUDY_YAML}").type != pafs.FileType.File
            ):
                raise StudyError(
                    f"--resume: {self.uri} is not a study folder (no {STUDY_YAML}); expected the "
                    "--storage and --name of an earlier run"
                )
        elif info.type != pafs.FileType.NotFound:
            raise StudyError(f"{self.uri} already exists; expected a new --name, or --resume to continue that study")
        else:
            top = _first_missing(self.fs, self.path)
        try:
            self.fs.create_dir(self.path, recursive=True)
            with self.fs.open_output_stream(f"{self.path}/{_PROBE}") as f:
                f.write(b"ok")
            self.fs.delete_file(f"{self.path}/{_PROBE}")
        except OSError as e:
            raise StudyError(
                f"--storage {storage}: cannot write the study folder {self.uri} ({_os_reason(e)}); "
                "expected a writable folder or URI"
            ) from None
        finally:
            self.take_back(top)


def _study_name(spec_name: str, name: str | None, resume: bool, fs: pafs.FileSystem, root: str) -> str:
    if name:
        if any(not (c.isalnum() or c in "-_.") for c in name):
            raise StudyError(f"--name {name!r}: expected letters, digits, '-', '_' or '.'")
        return name
    if not resume:
        return f"{spec_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    info = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    mine = sorted(
        i.base_name for i in info if i.type == pafs.FileType.Directory and i.base_name.startswith(spec_name + "-")
    )
    if not mine:
        raise StudyError(f"--resume: no study named {spec_name}-* under {root}; expected --name of an existing study")
    return mine[-1]


def _first_missing(fs: pafs.FileSystem, path: str) -> str | None:
    """The highest folder on the way to ``path`` that does not exist yet (what a recursive
    create_dir makes), or None when ``path`` exists."""
    top = None
    cur = path.rstrip("/")
    while cur and fs.get_file_info(cur).type == pafs.FileType.NotFound:
        top = cur
        parent = cur.rsplit("/", 1)[0]
        if parent == cur:
            break
        cur = parent
    return top


def _os_reason(e: OSError) -> str:
    """The reason of an OSError in a few words (pyarrow's "... Detail: [errno 20] Not a directory")."""
    text = " ".join(str(e.strerror or e).split())
    if "Detail: " in text:
        text = text.rsplit("Detail: ", 1)[1]
    if text.lower().startswith("[errno"):
        text = text.split("]", 1)[-1].strip()
    return text
