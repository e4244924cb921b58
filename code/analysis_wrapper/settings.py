"""Settings: where stores live (environment) and how this run behaves (command line).

Two sources, each for one kind of setting, so neither can leak into the other:

- :class:`StoreSettings` reads the environment variables upstream capsules already
  set (``DOCDB_HOST``, ``ANALYSIS_BUCKET``, ...). Nothing else is read from the
  environment: not ``dry_run``, and never an analysis parameter (upstream defect D20).
- :class:`RunOptions` holds the wrapper's command-line flags; the analysis's own
  parameters are parsed beside them (see :mod:`analysis_wrapper.command_line`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

STORE_DIR_NAME = ".analysis_store"


class StoreSettings(BaseSettings):
    """Where records and results are stored, read from the environment.

    Unset, both stores are embedded in the capsule: records in
    ``<capsule>/.analysis_store/records.sqlite``, results under
    ``<capsule>/.analysis_store/results/``.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    docdb_host: str | None = Field(
        default=None,
        validation_alias="DOCDB_HOST",
        description="Record store: unset = embedded SQLite; mongodb://... ; or a DocDB API host.",
    )
    docdb_database: str = Field(
        default="analysis", validation_alias="DOCDB_DATABASE", description="Record database."
    )
    docdb_collection: str = Field(
        default="analysis_results",
        validation_alias="DOCDB_COLLECTION",
        description="Record collection (table).",
    )
    docdb_version: str = Field(
        default="v1", validation_alias="DOCDB_VERSION", description="AIND DocDB API version."
    )
    analysis_bucket: str | None = Field(
        default=None,
        validation_alias="ANALYSIS_BUCKET",
        description="Results store: unset = embedded folder; file:///abs or /abs; s3://bucket/prefix.",
    )
    codeocean_email: str | None = Field(
        default=None,
        validation_alias="CODEOCEAN_EMAIL",
        description="Experimenter recorded with each result.",
    )
    codeocean_api_token: SecretStr | None = Field(
        default=None, validation_alias="CODEOCEAN_API_TOKEN", description="Code Ocean API token."
    )


@dataclass(frozen=True)
class RunOptions:
    """The wrapper's own flags for one run (command line or Code Ocean app panel).

    Parameters
    ----------
    input_directory : Path
        Holds ``job_dict/`` and the optional ``analysis_parameters.json``.
    results_directory : Path
        Each job's output goes to ``<results_directory>/<key>/``.
    dry_run : bool
        Read the stores, run the analyses, but write only under ``results_directory``.
    force : bool
        Run a job even if a record with its key exists, and replace it.
    plan : bool
        Run nothing: write ``plan.json`` and print what would happen.
    allow_dirty : bool
        Post results from a work tree with uncommitted changes (version ``+dirty``).
    """

    input_directory: Path
    results_directory: Path
    dry_run: bool = True
    force: bool = False
    plan: bool = False
    allow_dirty: bool = False

    @property
    def posting(self) -> bool:
        """True when this run writes to the stores."""
        return not self.dry_run and not self.plan


@dataclass(frozen=True)
class Capsule:
    """The folders of a capsule: ``<root>/code``, ``<root>/data``, ``<root>/results``.

    In Code Ocean ``root`` is ``/``; in a clone it is the clone's top folder.
    """

    root: Path

    @property
    def code_dir(self) -> Path:
        """The ``code/`` folder, which holds ``run_capsule.py``."""
        return self.root / "code"

    @property
    def data_dir(self) -> Path:
        """The default input directory."""
        return self.root / "data"

    @property
    def results_dir(self) -> Path:
        """The default results directory."""
        return self.root / "results"

    @property
    def store_dir(self) -> Path:
        """Where the embedded stores live by default."""
        return self.root / STORE_DIR_NAME

    @classmethod
    def find(cls, start: Path) -> Capsule | None:
        """Walk up from ``start`` to the folder that holds ``code/run_capsule.py``."""
        for folder in (start.resolve(), *start.resolve().parents):
            if (folder / "code" / "run_capsule.py").is_file():
                return cls(folder)
        return None
