"""The HTTP session the AIND DocDB REST API store hands to ``MetadataDbClient``.

aind-data-access-api's client sends every request through the ``requests.Session`` it
is given (``session.get``/``post``/``delete``) and passes no timeout, so without one a
hung gateway blocks the caller forever. :class:`TimeoutSession` applies its own
timeout to every request that names none. The timeout is an attribute listed in
``__attrs__``, which is what ``requests.Session`` pickles, so a copy made by pickling
(a process pool or Dask worker) keeps it; a patched ``request`` method would not
survive. The store itself never pickles its session: it makes a new one on first use.

requests is imported here; only :mod:`.store` imports this module, lazily.
"""

from __future__ import annotations

from typing import Any

import requests  # type: ignore[import-untyped,unused-ignore]


class TimeoutSession(requests.Session):  # type: ignore[misc,unused-ignore]
    """A ``requests.Session`` whose requests time out after ``timeout_s`` by default.

    Parameters
    ----------
    timeout_s : tuple of float
        The connect and read timeouts, in seconds.
    """

    __attrs__ = [*requests.Session.__attrs__, "timeout_s"]  # noqa: RUF012 (what pickles)

    def __init__(self, timeout_s: tuple[float, float]) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(  # type: ignore[override,unused-ignore]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> Any:
        """Send a request; one that names no timeout gets :attr:`timeout_s`."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().request(method, url, *args, **kwargs)
