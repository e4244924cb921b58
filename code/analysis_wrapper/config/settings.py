"""Settings: where stores live (environment) and how this run behaves (command line).

Two sources, each for one kind of setting, so neither can leak into the other:

- :class:`StoreSettings` reads the environment variables upstream capsules already
  set (``DOCDB_HOST``, ``ANALYSIS_BUCKET``, ...). Nothing else is read from the
  environment: not ``dry_run``, and never an analysis parameter (upstream defect D20).
- :class:`CodeOceanSettings` reads the Code Ocean run's variables (``CO_*``), the API
  domain and token, and the version policy (``CODE_VERSION_POLICY``).
- :class:`InputSettings` reads how a job's inputs are read and identified: the
  download cache (``INPUT_CACHE_DIR``, ``INPUT_CACHE_MAX_SIZE``), the asset metadata
  records' source (``METADATA_HOST``, else ``DOCDB_HOST``) and ``INPUT_IDENTITY``.
- :class:`RunOptions` holds the wrapper's command-line flags; the analysis's own
  parameters are parsed beside them (see :mod:`analysis_wrapper.config.command_line`).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ByteSize, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..stores.claims import DEFAULT_LEASE_SECONDS

STORE_DIR_NAME = ".analysis_store"

ExecutorKind = Literal["serial", "process", "dask"]
"""Where jobs run (``--executor``)."""


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


class VersionPolicy(str, enum.Enum):
    """Which version of the code a result is attributed to (``CODE_VERSION_POLICY``).

    ``commit`` (default): the exact commit that ran. ``release``: the Code Ocean
    capsule release that ran, as ``<major>.<minor>``; every commit of one release
    then shares its results, and the capsule owner decides when results change.
    """

    COMMIT = "commit"
    RELEASE = "release"


class CodeOceanSettings(BaseSettings):
    """Where the code runs in Code Ocean, and how its version is chosen (environment).

    ``CO_COMPUTATION_ID``, ``CO_CAPSULE_ID`` and ``CO_PIPELINE_ID`` are set by Code
    Ocean in every run; the others are capsule settings and secrets.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    domain: str | None = Field(
        default=None,
        validation_alias="CODEOCEAN_DOMAIN",
        description="Code Ocean host name (https assumed) or full URL, e.g. http://127.0.0.1:8080.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        validation_alias="CODEOCEAN_API_TOKEN",
        description="Code Ocean API token (a secret); read access is enough.",
    )
    computation_id: str | None = Field(
        default=None, validation_alias="CO_COMPUTATION_ID", description="Set by Code Ocean."
    )
    capsule_id: str | None = Field(
        default=None, validation_alias="CO_CAPSULE_ID", description="Set by Code Ocean."
    )
    pipeline_id: str | None = Field(
        default=None,
        validation_alias="CO_PIPELINE_ID",
        description="Set by Code Ocean in a pipeline run only.",
    )
    version_policy: VersionPolicy = Field(
        default=VersionPolicy.COMMIT,
        validation_alias="CODE_VERSION_POLICY",
        description="commit (the exact commit that ran) or release (the capsule release).",
    )
    min_server_version: str | None = Field(
        default=None,
        validation_alias="CODEOCEAN_MIN_SERVER_VERSION",
        description="Min-Server-Version header to send: unset = the SDK's own; 'none' = omit.",
    )

    @property
    def in_codeocean(self) -> bool:
        """True inside a Code Ocean run (``CO_COMPUTATION_ID`` is set)."""
        return bool(self.computation_id and self.computation_id.strip())


class InputIdentity(str, enum.Enum):
    """What of a job's inputs enters its key (``INPUT_IDENTITY``).

    ``location`` (default): the inputs' locations only; data re-uploaded to the same
    place is taken for the old, and no request is made while planning. ``content``:
    also each input's version, an S3 ETag or VersionId (one HEAD per ``file_location``,
    one listing per 1,000 objects of an asset prefix, per plan) or a local file's size
    and modification time (one ``stat`` per file), so changed data runs again.
    """

    LOCATION = "location"
    CONTENT = "content"


class InputSettings(BaseSettings):
    """How a job's inputs are read and identified, read from the environment.

    The asset metadata records (``job.asset_records()``) come from ``METADATA_HOST``:
    a ``mongodb://`` URI or an AIND DocDB API host name, as for ``DOCDB_HOST``. Unset,
    it is ``DOCDB_HOST``'s server, as upstream read both from one host; ``none`` (or an
    embedded record store) means no records are available.
    """

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", env_ignore_empty=True
    )

    input_identity: InputIdentity = Field(
        default=InputIdentity.LOCATION,
        validation_alias="INPUT_IDENTITY",
        description="location: keys use input locations; content: also their versions.",
    )
    cache_dir: Path | None = Field(
        default=None,
        validation_alias="INPUT_CACHE_DIR",
        description="Download cache; unset = $XDG_CACHE_HOME or ~/.cache, /aind-analysis-wrapper.",
    )
    cache_max_size: ByteSize = Field(
        default=ByteSize(20 * 1024**3),
        validation_alias="INPUT_CACHE_MAX_SIZE",
        description="Download cache bound (bytes, or 500MB, 20GiB); least recently used go.",
    )
    metadata_host: str | None = Field(
        default=None,
        validation_alias="METADATA_HOST",
        description="Asset records: mongodb://... or a DocDB API host; unset = DOCDB_HOST.",
    )
    docdb_host: str | None = Field(default=None, validation_alias="DOCDB_HOST")
    metadata_database: str = Field(default="metadata_index", validation_alias="METADATA_DATABASE")
    metadata_collection: str = Field(default="data_assets", validation_alias="METADATA_COLLECTION")
    metadata_version: str | None = Field(
        default=None,
        validation_alias="METADATA_VERSION",
        description="DocDB API version of the asset records; unset = DOCDB_VERSION or v1.",
    )
    docdb_version: str = Field(default="v1", validation_alias="DOCDB_VERSION")

    @property
    def asset_records_host(self) -> str | None:
        """Where asset records come from, or ``None`` when no source is configured."""
        host = (self.metadata_host or self.docdb_host or "").strip()
        if not host or host.lower() == "none" or host.startswith("sqlite:"):
            return None
        return host

    @property
    def cache_directory(self) -> Path:
        """The download cache's folder (``INPUT_CACHE_DIR`` or the user cache folder)."""
        if self.cache_dir is not None:
            return self.cache_dir.expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "aind-analysis-wrapper"


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
    require_pushed : bool
        Refuse to post from a commit that no remote branch contains.
    executor : str
        Where jobs run: ``serial``, ``process`` or ``dask``.
    workers : int or None
        Process-pool or LocalCluster size; ``None`` means one per CPU.
    scheduler_address : str or None
        A running Dask scheduler to use instead of a LocalCluster.
    retry_failed : bool
        Run again the jobs whose earlier attempt failed (their claim says so).
    lease_seconds : float
        How long a claim lives without a heartbeat; a crashed worker's jobs can be
        taken over after this long.
    transient_retries : int
        How many more tries a job gets after a transient failure.
    verbose : bool
        Log a line per job on a terminal too, where the progress bar otherwise stands
        for them.
    explain : str or None
        With ``plan``: a planned job's key (or a unique prefix of it) whose
        differences from the closest stored record are printed, grouped.
    """

    input_directory: Path
    results_directory: Path
    dry_run: bool = True
    force: bool = False
    plan: bool = False
    allow_dirty: bool = False
    require_pushed: bool = False
    executor: ExecutorKind = "serial"
    workers: int | None = None
    scheduler_address: str | None = None
    retry_failed: bool = False
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    transient_retries: int = 2
    verbose: bool = False
    explain: str | None = None

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
