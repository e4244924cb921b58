"""Records and claims through the AIND DocDB REST API (aind-data-access-api)."""
