"""An unreachable S3 is a named error in bounded time, sized to the caller (issue 25).

Real parts: TCP servers on 127.0.0.1 that stop answering (one accepts connections and never
says a word, one accepts and hangs up at once), a closed port, the real clients (botocore,
obstore), the real API handler behind the local API gateway with its 29 s integration
timeout. Upper bounds only, generous ones: the API's budget, not the profile's figures.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from typing import Callable, Iterator

import pytest

from cubecut import storage
from cubecut.errors import HostUnreachableError, StorageError
from cubecut.storage import BATCH, INTERACTIVE, Location, get_bytes, using_deadlines

#: The API function's timeout (template.yaml's ApiFunction Timeout): an answer must come sooner.
API_BUDGET_S = 29.0


class DeadServer:
    """A TCP server on 127.0.0.1 that accepts connections and then either never answers
    (``hang_up=False``: holds them open, silent) or closes them at once; counts them."""

    def __init__(self, hang_up: bool = False, headers_only: bool = False) -> None:
        self.hang_up, self.headers_only = hang_up, headers_only
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed: stop serving
                return
            self.accepted += 1
            if self.hang_up:
                connection.close()
                continue
            if self.headers_only:  # a 200 whose body never comes
                connection.recv(65536)
                connection.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: "x"\r\n\r\n')
            self._held.append(connection)

    def counted(self, expected: int, wait_s: float = 5.0) -> int:
        """Connections accepted, once ``expected`` are or ``wait_s`` passed: the kernel
        completes a client's connection before this server's thread accepts (counts) it."""
        until = time.monotonic() + wait_s
        while self.accepted < expected and time.monotonic() < until:
            time.sleep(0.01)
        return self.accepted

    def close(self) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()


def _closed_port() -> str:
    """The endpoint of a port nothing listens on (connections are refused)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent() -> Iterator[DeadServer]:
    server = DeadServer()
    yield server
    server.close()


@pytest.fixture
def no_s3_clients() -> Iterator[None]:
    """No cached client of another endpoint before or after the test."""
    storage.reset_clients()
    yield
    storage.reset_clients()


def _timed(call: Callable[[], object]) -> tuple[float, BaseException]:
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        call()
    return time.monotonic() - started, raised.value


READS = {"botocore": lambda: get_bytes("s3://cubes/sidecar.json"),
         "obstore": lambda: storage.get_bytes_fast("s3://cubes/sidecar.json")}


@pytest.mark.parametrize("client", sorted(READS))
@pytest.mark.parametrize("where", ["silent", "closed"])
def test_interactive_read_of_a_dead_s3_is_a_named_error_within_the_api_budget(client, where, silent, no_s3_clients,
                                                                              monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", silent.endpoint if where == "silent" else _closed_port())
    with using_deadlines(INTERACTIVE):
        elapsed, error = _timed(READS[client])
    assert isinstance(error, HostUnreachableError), error
    assert "cannot reach host 127.0.0.1:" in str(error)
    assert elapsed < API_BUDGET_S, f"{client} took {elapsed:.1f} s"
    if where == "silent":  # tried again, within the profile's attempts
        assert silent.counted(INTERACTIVE.attempts) == INTERACTIVE.attempts


@pytest.mark.parametrize("client", sorted(READS))
def test_interactive_read_of_a_body_that_never_comes_fails_within_the_api_budget(client, no_s3_clients,
                                                                                 monkeypatch):
    """Headers, then silence: the body retries too are the profile's attempts."""
    server = DeadServer(headers_only=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    try:
        with using_deadlines(INTERACTIVE):
            elapsed, error = _timed(READS[client])
    finally:
        server.close()
    assert elapsed < API_BUDGET_S, f"{client} took {elapsed:.1f} s: {error}"
    assert server.accepted <= INTERACTIVE.attempts ** 2, server.accepted


def test_batch_profile_is_the_default_and_keeps_retrying(no_s3_clients, monkeypatch):
    """Workers keep the generous profile: more attempts against a server that hangs up."""
    server = DeadServer(hang_up=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    try:
        assert storage.deadlines() == BATCH
        with pytest.raises(HostUnreachableError):  # obstore backs off from 0.1 s: all attempts are quick
            READS["obstore"]()
        # obstore does not retry every way a hung-up connection can fail (which one a try
        # meets depends on timing): more tries than INTERACTIVE allows, never more than BATCH's
        assert INTERACTIVE.attempts < server.counted(BATCH.attempts) <= BATCH.attempts
        server.accepted = 0
        # botocore backs off up to 20 s between attempts: see a third one, do not wait for the eighth
        reader = threading.Thread(target=lambda: pytest.raises(StorageError, READS["botocore"]), daemon=True)
        reader.start()
        waited = time.monotonic()
        while server.accepted <= INTERACTIVE.attempts and time.monotonic() - waited < 30:
            time.sleep(0.05)
        assert server.accepted > INTERACTIVE.attempts
    finally:
        server.close()


def test_deadlines_follow_the_work_into_pool_threads():
    """Reads handed to threads run under the caller's profile, not the default."""
    from cubecut.reads import concurrently

    with using_deadlines(INTERACTIVE):
        seen = concurrently(lambda _: storage.deadlines(), range(4), threads=4)
    assert seen == [INTERACTIVE] * 4
    assert storage.deadlines() == BATCH


@pytest.mark.parametrize("where", ["silent", "closed"])
def test_api_answers_a_dead_s3_with_json_within_its_budget(where, silent, no_s3_clients, monkeypatch):
    """Through the local API gateway (29 s integration timeout), the real handler."""
    from cubecut_infra.local.apigw import ApiGatewayServer
    from cubecut_functions import api

    monkeypatch.setenv("AWS_ENDPOINT_URL", silent.endpoint if where == "silent" else _closed_port())
    monkeypatch.setenv("CUBECUT_BUCKET", "dead-s3")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    with ApiGatewayServer(api.handler, timeout_seconds=API_BUDGET_S) as gateway:
        started = time.monotonic()
        with pytest.raises(urllib.request.HTTPError) as answer:
            urllib.request.urlopen(f"{gateway.endpoint}/v1/cubes", timeout=60)
        elapsed = time.monotonic() - started
        body = json.loads(answer.value.read())
    assert answer.value.code == 503 and answer.value.headers["Retry-After"], (answer.value.code, body)
    assert body == {"message": "the cube store is not answering; try again later"}, body
    assert elapsed < API_BUDGET_S, f"the API took {elapsed:.1f} s"
