"""The whole API: every group of operations over the shared ``handlers.ApiBase``."""

from __future__ import annotations

from symbol_service.blobhandlers import BlobHandlers
from symbol_service.clienthandlers import ClientHandlers
from symbol_service.entryhandlers import EntryHandlers
from symbol_service.requesthandlers import RequestHandlers
from symbol_service.symsrvhandlers import SymsrvHandlers

__all__ = ["Api"]


class Api(RequestHandlers, EntryHandlers, BlobHandlers, ClientHandlers, SymsrvHandlers):
    """Built with the fields of ``handlers.ApiBase``; ``handle`` runs one resolved operation."""
