"""Local stand-ins for services the real clients talk to (no registry ships these)."""
