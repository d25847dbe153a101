"""Storage services for agent frameworks, each an optional extra importable only when its
framework is installed:

* :mod:`kvstore.integrations.langchain` (``pip install 'kvstore[langchain]'``):
  :class:`~kvstore.integrations.langchain.KVStoreByteStore`, LangChain's ``ByteStore``.
* :mod:`kvstore.integrations.adk` (``pip install 'kvstore[adk]'``): Google ADK's
  ``KVStoreSessionService`` and ``KVStoreArtifactService``.
* :mod:`kvstore.integrations.langgraph` (``pip install 'kvstore[langgraph]'``):
  ``KVStoreSaver``, LangGraph's checkpoint saver, and ``KVStoreStore``, its long-term
  memory store (no vector index).

Each adapter is built from a store (``kvstore.open(...)``) or from a URL and the usual
``open`` arguments, and is a thin layer over the store's public API: the costs and
guarantees are the store's, stated on each adapter.
"""
