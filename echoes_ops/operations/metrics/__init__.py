"""Monitoring: the tier's domain metrics (read through the operations that show them to
operators) and ``metrics serve``, a cached Prometheus endpoint.

Modules: ``domain`` (readings), ``exposition`` (their metric families), ``source`` (the
cached readings and the drift cadence), ``serve`` (the HTTP server).
"""
