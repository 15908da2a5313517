"""Every study's trials in an Optuna RDB storage, so ``optuna.load_study`` and ``optuna-dashboard`` read them.

The storage is, in this order: ``--optuna-storage URL``, the study file's ``search.storage``, or
by default ``optuna.db``, a SQLite file in the study folder. A SQLite file cannot live in an
object store, so for a study folder such as ``s3://bucket/studies/ratio-1`` the database is kept
in a local file (``<tmp>/splicemix-study/optuna-<hash of the folder's URI>.db``), copied into the
study folder as ``optuna.db`` after every finished trial and at the end, and copied back by
``--resume`` when the local file is gone.

The Optuna study is named after the study folder. TPE / random studies: it is the searcher's own
storage (``OptunaSearch``, which records each trial's parameters, intermediate values and value).
Grid studies: :meth:`OptunaStore.record` adds each finished trial (state COMPLETE, PRUNED for
one stopped early, FAIL for a diverged or failed one) with its searched values, its per-epoch
metric as intermediate values and its final metric as value, once: the Tune trial id is the
user attribute :data:`TUNE_TRIAL_ID`, checked before adding.
"""

from __future__ import annotations

import hashlib
import math
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from splicemix.results import EPOCH, Status, cfg_column, final

from .folder import OPTUNA_DB, StudyFolder
from .schema import StudyError, StudySpec
from .space import SEED_KEY
from .store import join_uri

if TYPE_CHECKING:
    import optuna

__all__ = ["OptunaStore", "TUNE_TRIAL_ID"]

TUNE_TRIAL_ID = "tune_trial_id"  #: the user attribute of an Optuna trial that names its Tune trial
_STATES = {Status.COMPLETED.value: "COMPLETE", Status.STOPPED.value: "PRUNED"}  # any other end: FAIL


class OptunaStore:
    """The Optuna storage of one study: ``url`` (SQLAlchemy), ``study_name``, and for a remote study
    folder the local SQLite file that is copied there (:meth:`upload`)."""

    def __init__(self, url: str, study_name: str, folder: StudyFolder, local_db: Path | None, explicit: bool):
        self.url, self.study_name, self.folder, self.local_db, self.explicit = (
            url,
            study_name,
            folder,
            local_db,
            explicit,
        )
        self._study: optuna.Study | None = None
        self._recorded: set[str] | None = None

    @classmethod
    def open(cls, url: str | None, folder: StudyFolder, resume: bool) -> OptunaStore:
        """The storage ``url`` (None: the default SQLite file) of the study in ``folder``. A given URL
        is connected to now (StudyError naming it when that fails); with ``resume`` the URL must be
        the one the study was started with."""
        if url:
            store = cls(url, folder.name, folder, None, True)
            store.storage()  # connects and creates Optuna's tables: a bad URL fails before Ray starts
        elif isinstance(folder.fs, pafs.LocalFileSystem):
            store = cls(f"sqlite:///{folder.path}/{OPTUNA_DB}", folder.name, folder, None, False)
        else:
            key = hashlib.sha1(folder.uri.encode()).hexdigest()[:12]
            local = Path(tempfile.gettempdir()) / "splicemix-study" / f"optuna-{key}.db"
            store = cls(f"sqlite:///{local}", folder.name, folder, local, False)
            store._fetch(resume)
        if resume:
            store._check_same(folder.read_meta().get("optuna") or {})
        return store

    def describe(self) -> dict[str, Any]:
        """What provenance.json records: the study name, the URL (password hidden), where a copy goes."""
        copy = join_uri(self.folder.uri, OPTUNA_DB) if self.local_db else None
        return {"study_name": self.study_name, "storage": self.shown_url, "explicit": self.explicit, "copy": copy}

    @property
    def shown_url(self) -> str:
        """The URL with its password hidden (for messages and provenance.json)."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    def storage(self) -> optuna.storages.RDBStorage:
        """Optuna's RDBStorage at :attr:`url` (StudyError naming the URL when it cannot be opened)."""
        import optuna
        import sqlalchemy.exc

        try:
            return optuna.storages.RDBStorage(self.url)
        except (ValueError, ImportError, sqlalchemy.exc.SQLAlchemyError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise StudyError(
                f"Optuna storage {self.shown_url}: {first[:300]}; expected an SQLAlchemy URL of a reachable database "
                "(sqlite:///path/optuna.db, postgresql://user@host/db)"
            ) from None

    def study(self, spec: StudySpec) -> optuna.Study:
        """The Optuna study (created on first use)."""
        import optuna

        if self._study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            direction = "maximize" if spec.search.mode == "max" else "minimize"
            self._study = optuna.create_study(
                storage=self.storage(), study_name=self.study_name, direction=direction, load_if_exists=True
            )
        return self._study

    # -- grid studies: finished trials added from the result store ------------------------------
    def record(self, spec: StudySpec, row: dict, history: list[dict], distributions: dict[str, Any]) -> bool:
        """Add the finished trial ``row`` (a trials.parquet row; ``history``: its epochs' rows) unless
        it is there already or still running; True when added."""
        import optuna

        study = self.study(spec)
        if self._recorded is None:
            self._recorded = {str(t.user_attrs.get(TUNE_TRIAL_ID)) for t in study.get_trials(deepcopy=False)}
        trial_id = row["trial_id"]
        if row["status"] == Status.RUNNING.value or trial_id in self._recorded:
            return False
        metric = spec.search.metric
        state = optuna.trial.TrialState[_STATES.get(row["status"], "FAIL")]
        value = _finite(row.get(final(metric)))
        if value is None and state == optuna.trial.TrialState.COMPLETE:
            state = optuna.trial.TrialState.FAIL
        first = history[0] if history else row  # a history row holds each searched value as Tune had it
        params = {k: int(row["seed"]) if k == SEED_KEY else first.get(cfg_column(k)) for k in distributions}
        steps = {int(r[EPOCH]): _finite(r.get(metric)) for r in history}
        try:
            trial = optuna.trial.create_trial(
                state=state,
                value=None if state == optuna.trial.TrialState.FAIL else value,
                params=params,
                distributions=distributions,
                intermediate_values={k: v for k, v in steps.items() if v is not None},
                user_attrs={TUNE_TRIAL_ID: trial_id, "status": row["status"], "message": row.get("message") or ""},
            )
        except ValueError as e:  # a value outside its distribution: the Parquet files still hold the trial
            print(f"study.run: warning: trial {trial_id} not added to the Optuna study ({e})", file=sys.stderr)
            return False
        study.add_trial(trial)
        self._recorded.add(trial_id)
        return True

    # -- a remote study folder: the local SQLite file and its copy there ------------------------
    def upload(self) -> None:
        """Copy the local SQLite file into the remote study folder (no-op for any other storage)."""
        if self.local_db is None or not self.local_db.is_file():
            return
        fs, target = self.folder.fs, f"{self.folder.path}/{OPTUNA_DB}"
        tmp = f"{target}.tmp"
        with fs.open_output_stream(tmp) as out:
            out.write(self.local_db.read_bytes())
        fs.move(tmp, target)

    def _fetch(self, resume: bool) -> None:
        """Start from the study folder's copy (--resume without the local file), or afresh."""
        assert self.local_db is not None
        self.local_db.parent.mkdir(parents=True, exist_ok=True)
        if not resume:
            self.local_db.unlink(missing_ok=True)
            return
        if self.local_db.is_file():
            return  # this machine's file: at least as new as its last copy
        try:
            with self.folder.fs.open_input_stream(f"{self.folder.path}/{OPTUNA_DB}") as f:
                self.local_db.write_bytes(f.read())
        except FileNotFoundError:
            pass

    def _check_same(self, recorded: dict) -> None:
        """--resume: the storage must be the one the study recorded its trials in."""
        if not recorded:
            return
        if recorded.get("explicit") != self.explicit or (self.explicit and recorded.get("storage") != self.shown_url):
            was = recorded.get("storage") if recorded.get("explicit") else "the study folder's optuna.db"
            raise StudyError(
                f"--resume: {self.folder.uri} recorded its Optuna trials in {was}; expected the same storage "
                "(--optuna-storage / search.storage as at the start)"
            )


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
