"""echoes-ops: operator toolkit for the Redis tier of Echoes of the Ashes."""

__version__ = "0.1.0"
