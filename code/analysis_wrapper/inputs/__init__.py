"""A job's data assets, ready to read: local, mounted or on S3, cached, globbed, versioned."""
