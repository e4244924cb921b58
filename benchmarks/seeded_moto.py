"""moto's S3 server, started with a bucket already holding many small objects.

    <servers venv>/bin/python benchmarks/seeded_moto.py --port P --bucket B --objects FILE

Putting 40,000 objects through the server's HTTP API takes a minute or more (moto
spends about 1.5 ms of its one core on each PUT); put straight into moto's in-memory
backend, in this process, before it serves, they take about two seconds. The objects
are moto's own (the same as a PUT makes), so what the benchmark then asks of the
server over HTTP is what it would ask of a store filled by uploads. ``FILE`` holds
one object key a line; each object's body is ``{}``. Runs in the test servers'
virtual environment (moto is not a dependency of the package).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import main as serve


def main() -> None:
    """Create the bucket, put the objects, then serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--objects", type=Path, required=True)
    parser.add_argument("--region", default="us-west-2")
    args = parser.parse_args()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(args.bucket, args.region)
    with args.objects.open(encoding="utf-8") as names:
        for name in names:
            backend.put_object(args.bucket, name.rstrip("\n"), b"{}")
    serve(["-H", "127.0.0.1", "-p", str(args.port)])


if __name__ == "__main__":
    main()
