"""jat-pipeline: rebuild, extend and validate the JAT generalist-agent dataset.

The public surface is small on purpose (as in Minari): the task registry, the schema,
and one function per stage. Only `pipeline.cli` parses arguments.
"""

__version__ = "0.1.0"
