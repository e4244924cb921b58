"""The Code Ocean API client: the few reads the wrapper needs, through the ``codeocean`` SDK.

The SDK is imported on first use. Its errors are translated here, at the boundary, into
:class:`CodeOceanError` (configuration, authorisation, not found: exit 2) or
:class:`CodeOceanUnavailableError` (unreachable, server error: exit 1). The API token is
sent only as HTTP Basic credentials: never in a URL, a command line, a log line or a
message. What the reads mean for a run is :mod:`analysis_wrapper.identity.codeocean`'s concern.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from ..common.redact import mask_url
from ..config.settings import CodeOceanSettings
from ..errors import ProvenanceError, StoreError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'aind-analysis-wrapper[codeocean]' (the codeocean SDK, >=0.15,<0.18)"
TIMEOUT_SECONDS = 30.0
MIN_SERVER_VERSION_HEADER = "Min-Server-Version"
UNKNOWN_VERSION = "unknown"


class CodeOceanError(ProvenanceError):
    """Code Ocean answered, but not with what the run needs (settings, token, ids)."""


class CodeOceanUnavailableError(StoreError):
    """Code Ocean could not be reached, or failed (a network or server error)."""


def base_url(domain: str) -> str:
    """Turn ``CODEOCEAN_DOMAIN`` into the base URL the API and capsule pages live under.

    A host name gets ``https://``, as upstream; a full URL (``http://127.0.0.1:8080``)
    is kept. A trailing slash is dropped.

    Raises
    ------
    CodeOceanError
        For an empty value or one that holds credentials.
    """
    text = domain.strip().rstrip("/")
    if not text:
        raise CodeOceanError(
            "CODEOCEAN_DOMAIN is empty; set it to your Code Ocean host, e.g. "
            "codeocean.allenneuraldynamics.org"
        )
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    if parts.username or parts.password:
        raise CodeOceanError(
            f"CODEOCEAN_DOMAIN {mask_url(text)} holds credentials; give the host only and put "
            "the token in the CODEOCEAN_API_TOKEN secret"
        )
    return text


def _sdk() -> ModuleType:
    try:
        return importlib.import_module("codeocean")
    except ImportError:
        raise CodeOceanError(
            f"the codeocean SDK is not installed, so Code Ocean cannot be read; {INSTALL_HINT}"
        ) from None


class CodeOceanClient:
    """The few reads the wrapper needs, with the SDK's errors translated.

    Parameters
    ----------
    settings : CodeOceanSettings
        Domain, token and Min-Server-Version policy.

    Raises
    ------
    CodeOceanError
        If the domain or token is missing, or the SDK is not installed.
    """

    def __init__(self, settings: CodeOceanSettings) -> None:
        if not settings.domain:
            raise CodeOceanError(
                "CODEOCEAN_DOMAIN is not set, so Code Ocean cannot be read; set it to your "
                "Code Ocean host (e.g. codeocean.allenneuraldynamics.org) in the capsule's "
                "environment variables"
            )
        token = settings.api_token.get_secret_value().strip() if settings.api_token else ""
        if not token:
            raise CodeOceanError(
                "CODEOCEAN_API_TOKEN is not set, so Code Ocean cannot be read; attach a Code "
                "Ocean API token (read access) as a secret named CODEOCEAN_API_TOKEN"
            )
        self.base_url = base_url(settings.domain)
        self._token = token
        sdk = _sdk()
        self._error_type: type[BaseException] = sdk.Error
        self._network_error: type[BaseException] = importlib.import_module(
            "requests"
        ).RequestException
        retry = importlib.import_module("urllib3.util").Retry(
            total=2,
            backoff_factor=0.2,
            status_forcelist=(502, 503, 504),
            allowed_methods=("GET",),
        )
        self._client: Any = sdk.CodeOcean(domain=self.base_url, token=token, retries=retry)
        session = self._client.session
        # The SDK sets no timeout: a dead server would hang the run forever.
        session.request = functools.partial(session.request, timeout=TIMEOUT_SECONDS)
        wanted = (settings.min_server_version or "").strip()
        if wanted.lower() in ("none", "off", "0"):
            session.headers.pop(MIN_SERVER_VERSION_HEADER, None)
        elif wanted:
            session.headers[MIN_SERVER_VERSION_HEADER] = wanted
        self._version_pinned = bool(wanted)

    # --- reads ------------------------------------------------------------------------

    def computation(self, computation_id: str) -> tuple[Any, dict[str, Any]]:
        """The computation, typed by the SDK, and its raw JSON.

        The raw JSON keeps ``version`` (the release that runs), which the SDK's
        ``Computation`` model drops.
        """
        raw = self._get(f"computation {computation_id}", f"computations/{computation_id}")
        models = importlib.import_module("codeocean.models.computation")
        return self._parse(f"computation {computation_id}", models.Computation, raw), raw

    def capsule(self, capsule_id: str) -> Any:
        """The capsule (``Capsule``)."""
        raw = self._get(f"capsule {capsule_id}", f"capsules/{capsule_id}")
        models = importlib.import_module("codeocean.models.capsule")
        return self._parse(f"capsule {capsule_id}", models.Capsule, raw)

    def pipeline(self, pipeline_id: str) -> Any:
        """The pipeline (a ``Capsule``)."""
        raw = self._get(f"pipeline {pipeline_id}", f"pipelines/{pipeline_id}")
        models = importlib.import_module("codeocean.models.capsule")
        return self._parse(f"pipeline {pipeline_id}", models.Capsule, raw)

    def data_asset(self, data_asset_id: str) -> Any:
        """The data asset (``DataAsset``)."""
        return self._call(
            f"data asset {data_asset_id}",
            lambda: self._client.data_assets.get_data_asset(data_asset_id),
        )

    def web_url(self, kind: str, slug: str) -> str:
        """The page of a capsule or pipeline: ``<base>/<kind>/<slug>``."""
        return f"{self.base_url}/{kind}/{slug}"

    # --- the boundary -----------------------------------------------------------------

    def _get(self, what: str, route: str) -> dict[str, Any]:
        raw = self._call(what, lambda: self._client.session.get(route).json())
        if not isinstance(raw, dict):
            raise CodeOceanError(f"Code Ocean returned no JSON object for {what}")
        return raw

    def _parse(self, what: str, model: Any, raw: dict[str, Any]) -> Any:
        try:
            return model.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise CodeOceanError(
                f"Code Ocean's answer for {what} does not match the codeocean SDK "
                f"({type(exc).__name__}: {self._clean(str(exc))}); check that the SDK "
                "version suits the server (see CODEOCEAN_MIN_SERVER_VERSION)"
            ) from None

    def _call(self, what: str, request: Callable[[], Any]) -> Any:
        try:
            return self._attempt(request)
        except self._error_type as exc:
            raise self._translate(what, exc) from None
        except self._network_error as exc:
            raise CodeOceanUnavailableError(
                f"Code Ocean at {self.base_url} could not be reached for {what} "
                f"({type(exc).__name__}); retry, or check CODEOCEAN_DOMAIN"
            ) from None
        except ValueError as exc:  # a body that is not JSON
            raise CodeOceanError(
                f"Code Ocean returned something that is not JSON for {what} "
                f"({self._clean(str(exc))}); check CODEOCEAN_DOMAIN"
            ) from None

    def _attempt(self, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except self._error_type as exc:
            headers = self._client.session.headers
            if (
                getattr(exc, "status_code", None) == 400
                and not self._version_pinned
                and MIN_SERVER_VERSION_HEADER in headers
            ):
                # An older server refuses the SDK's Min-Server-Version with 400. The reads
                # here use fields every 4.x server has, so go on without the header.
                log.warning(
                    "Code Ocean at %s refused the %s header %s (%s); reading without it. "
                    "Set CODEOCEAN_MIN_SERVER_VERSION to the server's version, or to 'none', "
                    "to silence this",
                    self.base_url,
                    MIN_SERVER_VERSION_HEADER,
                    headers[MIN_SERVER_VERSION_HEADER],
                    self._clean(str(getattr(exc, "message", ""))),
                )
                del headers[MIN_SERVER_VERSION_HEADER]
                return request()
            raise

    def _translate(
        self, what: str, exc: BaseException
    ) -> CodeOceanError | CodeOceanUnavailableError:
        status = getattr(exc, "status_code", None)
        message = self._clean(str(getattr(exc, "message", "") or "")).strip()
        detail = f": {message}" if message else ""
        if status in (401, 403):
            return CodeOceanError(
                f"Code Ocean refused the API token for {what} (HTTP {status}){detail}; check "
                "the CODEOCEAN_API_TOKEN secret (it needs read access to this capsule)"
            )
        if status == 404:
            return CodeOceanError(
                f"Code Ocean has no {what} (HTTP 404){detail}; check CO_COMPUTATION_ID, "
                "CO_CAPSULE_ID, CO_PIPELINE_ID and CODEOCEAN_DOMAIN"
            )
        if isinstance(status, int) and status >= 500:
            return CodeOceanUnavailableError(
                f"Code Ocean failed to return {what} (HTTP {status}){detail}; retry later"
            )
        return CodeOceanError(f"Code Ocean refused the request for {what} (HTTP {status}){detail}")

    def _clean(self, text: str) -> str:
        return mask_url(text.replace(self._token, "***")) if self._token else mask_url(text)


# --- reading the run ---------------------------------------------------------------------
