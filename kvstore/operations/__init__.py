"""The operations layer: what runs a store for months - what it holds (:mod:`.usage`).

Above the data models and the composed ones, beside the faces and ``fsck``: a module here
takes a :class:`~kvstore.context.StoreContext` (and the models' classes where it acts on
their objects) and never imports a face or the command layer.
"""

from .usage import usage

__all__ = ["usage"]
