"""A capsule for the claims tests: each analysis is counted and its files are tagged.

``run_analysis`` appends ``<index> <pid> <token>`` to the file ``ANALYSIS_LOG`` names
(one line per analysis that started), then writes ``ANALYSIS_FILES`` files, each
holding only its attempt's random token, so a result folder that mixed two attempts
shows it. ``ANALYSIS_SECONDS`` makes each analysis take that long.

``CRASH_AT=<point>:<index>`` kills this process with SIGKILL (kill -9) at one point of
job ``index``: ``analysis`` (half its files written), ``upload`` (while its result is
being published, after a random delay of up to ``CRASH_DELAY`` seconds), or ``record``
(its manifest is published, its record is about to be written). The stores are the
real ones; only the instant of death is chosen.

``STALL_AT=record:<index>`` stops this process (SIGSTOP, as a frozen VM or a long GC
pause would) as job ``index``'s record is handed to the store: after its last fence.
``HANG_AT=renew:<index>:<seconds>`` makes each renewal of job ``index``'s claim hang
that long before it reaches the store (a store call stuck in the network).
"""

import json
import os
import random
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from analysis_wrapper import AnalysisParameters, Job, run_analysis_jobs

CRASH_POINT, _, CRASH_INDEX = os.environ.get("CRASH_AT", "").partition(":")
STALL_POINT, _, STALL_INDEX = os.environ.get("STALL_AT", "").partition(":")
HANG_POINT, _, HANG_AT = os.environ.get("HANG_AT", "").partition(":")
HANG_INDEX, _, HANG_SECONDS = HANG_AT.partition(":")


class CountParameters(AnalysisParameters):
    """One job of the claims tests."""

    analysis_name: str = Field(default="claims test", description="Name of the analysis.")
    index: int = Field(default=0, description="Which job this is.")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def run_analysis(job: Job, parameters: CountParameters, results_dir: Path) -> dict[str, Any]:
    token = secrets.token_hex(8)
    with open(os.environ["ANALYSIS_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{parameters.index} {os.getpid()} {token}\n")
    started = os.environ.get("ANALYSIS_STARTED")
    if started:
        Path(started).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(float(os.environ.get("ANALYSIS_SECONDS", "0.02")))
    files = int(os.environ.get("ANALYSIS_FILES", "3"))
    size = int(os.environ.get("ANALYSIS_FILE_BYTES", "1000"))
    line = (token + "\n").encode()
    for number in range(files):
        folder = results_dir / ("nested" if number % 2 else "")
        folder.mkdir(exist_ok=True)
        (folder / f"part-{number}.txt").write_bytes(line * max(1, size // len(line)))
        if CRASH_POINT == "analysis" and str(parameters.index) == CRASH_INDEX and number:
            die()
    return {"token": token, "pid": os.getpid()}


def arm_crash() -> None:
    """Wrap the stores' publish or put so the process dies at the chosen point.

    ``upload``: once the chosen job's publish starts, the process dies when S3 has
    acknowledged its second object (botocore's after-call event, or a direct put's
    return), or, publishing to a folder, after a random delay; at the latest when
    publish returns: never past the record.
    ``record``: the process dies as the chosen job's record is handed to the store.
    """
    if CRASH_POINT not in ("upload", "record"):
        return
    from analysis_wrapper.stores.local import LocalResultStore
    from analysis_wrapper.stores.sqlite import SqliteRecordStore

    results: list[Any] = [LocalResultStore]
    records: list[Any] = [SqliteRecordStore]
    try:
        import boto3.session

        from analysis_wrapper.stores.mongo.store import MongoRecordStore
        from analysis_wrapper.stores.s3.direct_put import DirectPuts
        from analysis_wrapper.stores.s3.store import S3ResultStore
    except ImportError:
        pass
    else:
        results.append(S3ResultStore)
        records.append(MongoRecordStore)
        count_s3_uploads(boto3.session.Session, DirectPuts)
    delay = float(os.environ.get("CRASH_DELAY", "0.05"))
    for cls in results if CRASH_POINT == "upload" else records:
        original = cls.publish if CRASH_POINT == "upload" else cls.put

        def publish(
            self: Any,
            key: str,
            attempt: str,
            folder: Path,
            *rest: Any,
            _o: Any = original,
            **kw: Any,
        ) -> Any:
            if index_of(json.loads((folder / "key.json").read_text())["preimage"]) != CRASH_INDEX:
                return _o(self, key, attempt, folder, *rest, **kw)
            ARMED.set()
            if isinstance(self, LocalResultStore):  # S3 dies on its second object instead
                threading.Timer(random.uniform(0, delay), die).start()
            _o(self, key, attempt, folder, *rest, **kw)
            die()

        def put(
            self: Any, record: dict[str, Any], *rest: Any, _o: Any = original, **kw: Any
        ) -> Any:
            if index_of(record["processing"]["data_processes"][0]["code"]) == CRASH_INDEX:
                die()
            return _o(self, record, *rest, **kw)

        if CRASH_POINT == "upload":
            cls.publish = publish
        else:
            cls.put = put


def arm_faults() -> None:
    """Wrap the record stores' put (STALL_AT) or replace_claim (HANG_AT) of one job."""
    from analysis_wrapper.stores.sqlite import SqliteRecordStore

    records: list[Any] = [SqliteRecordStore]
    try:
        from analysis_wrapper.stores.mongo.store import MongoRecordStore
    except ImportError:
        pass
    else:
        records.append(MongoRecordStore)
    for cls in records:
        if STALL_POINT == "record":
            original_put = cls.put

            def put(self: Any, record: Any, *rest: Any, _o: Any = original_put, **kw: Any) -> Any:
                if index_of(record["processing"]["data_processes"][0]["code"]) == STALL_INDEX:
                    os.kill(os.getpid(), signal.SIGSTOP)
                return _o(self, record, *rest, **kw)

            cls.put = put
        if HANG_POINT == "renew":
            original_replace = cls.replace_claim

            def replace_claim(
                self: Any, claim: Any, *, expected_epoch: int, _o: Any = original_replace
            ) -> Any:
                renewal = claim.state == "running" and claim.epoch == expected_epoch
                if renewal and claim.label == f"job_{int(HANG_INDEX):03d}.json":
                    time.sleep(float(HANG_SECONDS))
                return _o(self, claim, expected_epoch=expected_epoch)

            cls.replace_claim = replace_claim


ARMED = threading.Event()
UPLOADED = []


def count_s3_uploads(session_class: Any, direct_puts: Any) -> None:
    """Die once S3 has acknowledged two objects (or parts) of the armed publish.

    An object goes up by boto3 (``put_object``, a multipart upload's parts) or as a
    direct put (small files); each is counted once, when S3 has answered.
    """
    original = session_class.client
    original_put = direct_puts.put

    def put(self: Any, *args: Any, **kwargs: Any) -> None:
        original_put(self, *args, **kwargs)
        if not self.through_boto3:  # put_object's after-call event counted the others
            on_upload()

    direct_puts.put = put

    def client(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        made = original(self, service, *args, **kwargs)
        if service == "s3":
            for operation in ("PutObject", "UploadPart"):
                made.meta.events.register(f"after-call.s3.{operation}", on_upload)
        return made

    session_class.client = client


def on_upload(**_: Any) -> None:
    if ARMED.is_set():
        UPLOADED.append(1)
        if len(UPLOADED) >= 2:
            die()


def index_of(holder: dict[str, Any]) -> str:
    """The job index in a key preimage or a record's code block."""
    return str(holder["parameters"]["index"])


if __name__ == "__main__":
    arm_crash()
    arm_faults()
    run_analysis_jobs(run_analysis, parameters_model=CountParameters)
