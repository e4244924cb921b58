"""The record of a result: the aind-data-schema document, queries, and what changed."""
