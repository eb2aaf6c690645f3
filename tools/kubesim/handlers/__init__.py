"""The API server's request handlers, one module per verb as in k8s.io/apiserver/pkg/endpoints/handlers.

``get`` (get, list), ``create``, ``update`` (update, patch), ``delete`` (delete, deletecollection)
and ``subresources`` (``/status``, ``/log``). ``apiserver.ApiServer`` routes to them.
"""
