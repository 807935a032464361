"""The promotion lock recovers from a holder that is gone, and only from that: a lock left behind by a
process of this host that no longer runs is taken at once, one of another host whose heartbeat stopped
after the lease (not the 15 minutes the lock once waited), while a live holder's heartbeat keeps its lock
however long it holds it. Against a real registry on an sqlite store in tmp_path; tests/registry/
test_registry.py drives the same lock through a server, with the server cut mid-promotion."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from stark.platform.mlflow_runs import mlflow_client
from stark.platform.registry.config import RegistryConfig
from stark.platform.registry.versions import PromotionLock, RegistryError

LOCK = "stark.promotion-lock"


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing MLflow writes may land in the repository
    return mlflow_client(f"sqlite:///{tmp_path}/mlflow.db")


def leave_lock(client, holder: str, heartbeat_age_s: float = 0.0) -> None:
    """The lock model as a holder that vanished leaves it."""
    beat = f"{time.time() - heartbeat_age_s:.3f}"
    client.create_registered_model(LOCK, tags={"holder": holder, "acquired_at": beat, "heartbeat_at": beat})


def holder_of(client) -> str:
    return client.get_registered_model(LOCK).tags["holder"]


def a_finished_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_the_default_lease_recovers_an_abandoned_lock_within_a_minute():
    assert RegistryConfig().lock_lease_s <= 60.0


def test_a_lock_left_by_a_process_of_this_host_that_no_longer_runs_is_taken_at_once(client):
    leave_lock(client, f"{socket.gethostname()}:{a_finished_pid()}:deadbeef0000")
    lines: list[str] = []
    started = time.monotonic()
    with PromotionLock(client, "stark", lease_s=900.0, wait_s=30.0, log=lines.append) as lock:
        assert time.monotonic() - started < 5.0
        assert holder_of(client) == lock.holder and lock.still_held()
    assert any("breaking" in line and "deadbeef0000" in line for line in lines), lines
    assert client.search_registered_models(f"name LIKE '{LOCK}%'") == []  # the lock and its break marker


def test_a_lock_of_another_host_whose_heartbeat_stopped_is_broken_after_the_lease(client):
    leave_lock(client, "another-host:4242:cafe00000000")
    started = time.monotonic()
    with PromotionLock(client, "stark", lease_s=2.0, wait_s=30.0, poll_s=0.1) as lock:
        waited = time.monotonic() - started
        assert holder_of(client) == lock.holder
    assert 1.5 <= waited < 10.0, waited


def test_a_live_holder_keeps_its_lock_past_the_lease_by_its_heartbeat(client):
    lease = 1.2
    holding, done = threading.Event(), threading.Event()
    kept: list[bool] = []

    def hold():
        with PromotionLock(client, "stark", lease_s=lease, wait_s=5.0) as held:
            holding.set()
            done.wait(10)
            kept.append(held.still_held())

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    first = holder_of(client)
    lines: list[str] = []
    try:
        with pytest.raises(RegistryError, match="another promotion holds"):
            with PromotionLock(client, "stark", lease_s=lease, wait_s=3 * lease, poll_s=0.1, log=lines.append):
                pass
        assert holder_of(client) == first  # three leases later: still the live holder's
        assert any("waiting for" in line and first in line for line in lines), lines
    finally:
        done.set()
        holder.join()
    assert kept == [True]


def test_a_holder_whose_lock_was_broken_knows_before_it_changes_anything_and_leaves_the_new_lock(client):
    with PromotionLock(client, "stark", lease_s=60.0, wait_s=5.0) as lock:
        assert lock.still_held()
        client.delete_registered_model(LOCK)  # broken by a waiter that took it for abandoned ...
        leave_lock(client, "another-host:7:beef00000000")  # ... which now holds it
        assert not lock.still_held()
    assert holder_of(client) == "another-host:7:beef00000000"


def test_of_several_waiters_on_an_abandoned_lock_only_one_holds_it_at_a_time(client):
    leave_lock(client, "another-host:4242:0ld000000000", heartbeat_age_s=3600)
    held: list[tuple[float, float]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def take():
        try:
            start.wait()
            with PromotionLock(client, "stark", lease_s=60.0, wait_s=60.0, poll_s=0.05):
                entered = time.monotonic()
                time.sleep(0.3)
                held.append((entered, time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    spans = sorted(held)
    assert len(spans) == 4
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans
