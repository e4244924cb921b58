"""Records and claims in MongoDB or Amazon DocumentDB, through pymongo."""
