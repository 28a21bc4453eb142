"""The tasks: the registry of env_configs/, its typed sections, env construction, the policy interface
and the one episode loop.
"""
