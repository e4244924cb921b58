"""The test servers start, answer, and survive a stop and start."""

import boto3
from pymongo import MongoClient

from servers import ServerProcess, on_each_s3_server

# The S3 check runs on moto, then on SeaweedFS.
s3_server, s3_endpoint = on_each_s3_server()


def test_s3_server_round_trips_an_object(s3_endpoint: str, aws_test_env: dict[str, str]) -> None:
    """An object put into the S3 server comes back."""
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(
        Bucket="servers-check", CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    client.put_object(Bucket="servers-check", Key="a/b.txt", Body=b"hello")
    assert client.get_object(Bucket="servers-check", Key="a/b.txt")["Body"].read() == b"hello"


def test_mongo_server_keeps_data_across_restart(
    mongo_server: ServerProcess, mongo_uri: str
) -> None:
    """A document written before a stop is there after a start."""
    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri, retryWrites=False)
    client["servers_check"]["docs"].insert_one({"_id": "kept", "value": 1})
    client.close()
    mongo_server.stop()
    mongo_server.start()
    client = MongoClient(mongo_uri, retryWrites=False)
    try:
        assert client["servers_check"]["docs"].find_one({"_id": "kept"}) == {
            "_id": "kept",
            "value": 1,
        }
    finally:
        client.close()
