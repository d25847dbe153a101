"""The Redis protocol (RESP2 and RESP3) in front of the command layer: ``kvstore serve``.

:mod:`.protocol` reads commands from a byte stream and writes replies; the server and its
connection commands build on it.
"""
