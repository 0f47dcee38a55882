"""Benchmarks of aiopeewee_dist against raw drivers and peer async ORMs (``make bench``)."""
