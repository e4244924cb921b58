"""PutObject made from the client's own parts, without the machinery of a boto3 call.

A boto3 ``put_object`` of a 256 KiB file costs the client 2 to 2.5 ms of CPU
(BENCHMARKS.md, "The floor of a client"). Most of it is not the request. boto3
validates and serialises the parameters, and resolves the endpoint from S3's rule set
(about 1 ms alone). It then runs a dozen event hooks and parses the response. On two
cores, uploading many small files, that costs as much as the server's own work.

:class:`DirectPuts` sends the same request from the same client's parts:

- the endpoint, resolved once per bucket by the client's rule set (region,
  addressing style, FIPS, dual-stack, acceleration);
- its SigV4 signer, and so its credentials, refreshed as they expire;
- its HTTP session: connection pool, TLS verification, proxies, timeouts;
- and, for errors, botocore's own parser, so an error reads as boto3's would.

The request is the one boto3 sends. It carries the CRC32 checksum header, unless the
configuration asks for checksums only where required. Over HTTPS the payload goes
unsigned, as boto3 sends it; over HTTP it is signed.

Whatever the direct request cannot vouch for goes to boto3:

- a client it cannot take apart gets no direct puts: an unsigned one, one that
  signs otherwise, or a botocore without these parts. So does an S3 Express bucket.
  :meth:`DirectPuts.for_bucket` then returns ``None``.
- a request the server refuses for good (a redirect to the bucket's real region, say)
  is sent again by ``put_object``. boto3's answer stands. If that put succeeds, the
  rest of the upload goes through boto3 too.
- transient failures (a 5xx, throttling, a dropped connection) are raised as boto3
  raises them, for the caller's retries.
"""

from __future__ import annotations

import base64
import logging
import zlib
from pathlib import Path
from typing import IO, Any

import botocore  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from botocore.parsers import create_parser  # type: ignore[import-untyped]
from botocore.utils import percent_encode  # type: ignore[import-untyped]

from .client import is_transient

log = logging.getLogger(__name__)

IN_MEMORY_MAX = 1024 * 1024
"""Files up to this size are read whole; larger ones are streamed from disk."""

_READ_CHUNK = 1024 * 1024
_USER_AGENT = f"Botocore/{botocore.__version__} analysis-wrapper/direct-put"
_SIGNATURE_VERSIONS = (None, "s3v4", "v4")


class DirectPuts:
    """PutObject requests into one bucket, signed and sent by a boto3 client's parts.

    Make one with :meth:`for_bucket`. It is thread-safe: many files may go up at once.

    Parameters
    ----------
    client : boto3 S3 client
        Signs and sends the requests; its ``put_object`` takes the ones refused.
    bucket : str
        The bucket all puts go into.
    bucket_url : str
        The bucket's URL as the client's rule set resolved it: object ``k`` is at
        ``<bucket_url>/<k, percent-encoded as botocore encodes a key>``.
    region : str
        The region requests are signed for.
    """

    def __init__(self, client: Any, bucket: str, bucket_url: str, region: str) -> None:
        self.client, self.bucket = client, bucket
        self.bucket_url = bucket_url.rstrip("/")
        self.region = region
        self._signer = client._request_signer
        self._http = client._endpoint.http_session
        self._config = client.meta.config
        checksums = getattr(self._config, "request_checksum_calculation", "when_supported")
        self._with_checksum = checksums != "when_required"
        self._through_boto3 = False

    @classmethod
    def for_bucket(cls, client: Any, bucket: str) -> DirectPuts | None:
        """Direct puts into ``bucket`` with ``client``'s parts, or ``None`` if they do not apply.

        ``None`` for an unsigned client, one configured to sign other than with SigV4,
        a bucket whose endpoint needs another scheme or extra headers (S3 Express),
        and a botocore that lacks the parts (the caller then uses ``put_object``).
        """
        try:
            if client.meta.config.signature_version not in _SIGNATURE_VERSIONS:
                return None  # unsigned (botocore.UNSIGNED), or SigV2 asked for
            client._request_signer.get_auth_instance  # noqa: B018  (the parts exist)
            client._endpoint.http_session.send  # noqa: B018
            operation = client.meta.service_model.operation_model("PutObject")
            context: dict[str, Any] = {}
            url, headers, _ = client._resolve_endpoint_ruleset(
                operation, {"Bucket": bucket, "Key": "k"}, context
            )
        except (AttributeError, TypeError):  # another botocore: boto3's own calls serve
            return None
        signing = context.get("signing", {})
        if headers or context.get("auth_type", "v4") != "v4":
            return None
        if signing.get("signing_name", "s3") != "s3":
            return None
        region = signing.get("region") or client.meta.region_name or "us-east-1"
        return cls(client, bucket, url, region)

    @property
    def through_boto3(self) -> bool:
        """Whether a refusal sent the rest of the puts through boto3's ``put_object``."""
        return self._through_boto3

    def put(self, key: str, path: Path, content_type: str | None = None) -> None:
        """Upload the file at ``path`` to ``key``.

        Raises
        ------
        botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, OSError
            What ``put_object`` would raise: a transient failure of the direct
            request as is, anything else as ``put_object`` answered it.
        """
        if not self._through_boto3:
            with path.open("rb") as file:
                response = self._http.send(self.signed(key, file, content_type))
            if 200 <= response.status_code < 300:
                return
            error = self._error(response)
            if is_transient(error):
                raise error
            log.debug("direct PUT of %s refused (%s); sending it with put_object", key, error)
        with path.open("rb") as file:
            extra = {"ContentType": content_type} if content_type else {}
            self.client.put_object(Bucket=self.bucket, Key=key, Body=file, **extra)
        self._through_boto3 = True  # boto3 succeeded where the direct put did not

    def signed(self, key: str, file: IO[bytes], content_type: str | None = None) -> Any:
        """The signed, prepared request that puts ``file`` (read from where it is) at ``key``."""
        small = _size_of(file) <= IN_MEMORY_MAX
        body: bytes | IO[bytes] = file.read() if small else file
        headers = {"User-Agent": _USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        if self._with_checksum:
            headers["x-amz-checksum-crc32"] = _crc32(body)
            headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
        request = AWSRequest(
            method="PUT", url=f"{self.bucket_url}/{percent_encode(key, safe='/~')}", data=body,
            headers=headers,
        )  # fmt: skip
        # What botocore's signer reads to decide on signing the payload: over HTTPS,
        # a streamed body with a checksum header goes unsigned, as put_object sends it.
        request.context.update(
            client_config=self._config,
            has_streaming_input=True,
            checksum={"request_algorithm": {"in": "header", "name": "x-amz-checksum-crc32"}},
        )
        auth = self._signer.get_auth_instance("s3", self.region, "s3v4")
        auth.add_auth(request)
        return request.prepare()

    def _error(self, response: Any) -> ClientError:
        """The ``ClientError`` boto3 would raise for ``response``, read by botocore's parser."""
        parsed = create_parser("rest-xml").parse(
            {"status_code": response.status_code, "headers": response.headers,
             "body": response.content},
            self.client.meta.service_model.operation_model("PutObject").output_shape,
        )  # fmt: skip
        return ClientError(parsed, "PutObject")


def _size_of(file: IO[bytes]) -> int:
    """How many bytes are left to read in ``file``."""
    here = file.tell()
    end = file.seek(0, 2)
    file.seek(here)
    return end - here


def _crc32(body: bytes | IO[bytes]) -> str:
    """The base64 CRC32 of ``body`` (a file is read to its end and put back)."""
    if isinstance(body, bytes):
        checksum = zlib.crc32(body)
    else:
        here, checksum = body.tell(), 0
        while chunk := body.read(_READ_CHUNK):
            checksum = zlib.crc32(chunk, checksum)
        body.seek(here)
    return base64.b64encode(checksum.to_bytes(4, "big")).decode()
