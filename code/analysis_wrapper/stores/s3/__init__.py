"""Results on S3 or any S3-compatible store, through boto3."""
