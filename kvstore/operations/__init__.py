"""The operations layer: what runs a store for months - what it holds (:mod:`.usage`), the
retention policies kept in the bucket (:mod:`.retention`) and the maintenance that applies
them (:mod:`.maintain`).

Above the data models and the composed ones, beside the faces and ``fsck``: a module here
takes a :class:`~kvstore.context.StoreContext` (and the models' classes where it acts on
their objects) and never imports a face or the command layer.
"""

from .maintain import Progress, maintain
from .retention import Rule, make_rule
from .usage import usage

__all__ = ["Progress", "Rule", "maintain", "make_rule", "usage"]
