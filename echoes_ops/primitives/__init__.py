"""Tier primitives: small building blocks that do I/O on the contract's keys and are shared
by the operations and the reference runtime (so neither imports the other for them).

- :mod:`.lock`: distributed locks (token-owned SET NX PX, compare-and-delete release,
  compare-and-expire extend).
"""
