"""Reproduce a record: its job rebuilt, its commit checked out and run again, files compared."""
