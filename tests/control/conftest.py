"""What the control plane's tests share: a real one-member etcd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.etcdproc import EtcdCluster, etcd_binary


@pytest.fixture(scope="module")
def node() -> Iterator[EtcdCluster]:
    """One etcd member for the test module (a test that takes it down uses a node of its own)."""
    etcd_binary()
    cluster = EtcdCluster(1).start()
    yield cluster
    cluster.stop()
