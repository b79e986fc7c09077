"""symbol-operator: reconciles SymbolSources (and later SymbolRequests) into sidecar configuration."""

__version__ = "0.1.0"
