"""The dataset's format: JAT's columns and schema, shards, manifests, and the plan that fixes each
episode's seed and split.
"""
