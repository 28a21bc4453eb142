"""The checks: validate (schema, files, the manifests' claims), integrity of interrupted runs, and
replay.
"""
