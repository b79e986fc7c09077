"""Tests of symbol_operator: pure units here, the real API server tier under ``k8s/``."""
