"""The subcommands of ``analysis-wrapper``, one module per command group.

Each module has ``register(subparsers)``, which adds its parsers and sets ``handler``
(a function taking the parsed arguments and returning an exit code).
"""
