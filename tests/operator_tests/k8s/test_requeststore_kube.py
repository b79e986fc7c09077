"""The ``RequestStore`` contract of ``tests/service/test_requeststore.py`` against the real API server:
``KubeRequestStore`` keeps each request as a SymbolRequest of the test's namespace. The tests are
imported from there so both stores pass the same ones; this module only supplies the ``store``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from symbol_operator.kubeapi import KubeApi
from symbol_service.kuberequests import KubeRequestStore
from tests.operator_tests.k8s.kube import Kube
from tests.service.test_requeststore import (
    test_create_then_read_by_id_and_name,
    test_delete_forgets_and_is_idempotent,
    test_names_are_unique_even_when_creates_race,
    test_replace_needs_the_current_etag,
)

__all__ = [
    "test_create_then_read_by_id_and_name",
    "test_delete_forgets_and_is_idempotent",
    "test_names_are_unique_even_when_creates_race",
    "test_replace_needs_the_current_etag",
]

pytestmark = pytest.mark.k8s


@pytest.fixture
async def store(kube: Kube, namespace: str) -> AsyncIterator[KubeRequestStore]:
    api = KubeApi()
    yield KubeRequestStore(api, namespace)
    await api.close()
