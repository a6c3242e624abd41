"""Run the sandbox in a background thread with its own event loop (for tests, the CLI and the demo)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import date

from aiohttp import web

from market_data_assets.sandbox.app import build_app
from market_data_assets.sandbox.config import SandboxConfig
from market_data_assets.sandbox.fault_rules import FaultInjector, FaultRule, RequestRecord
from market_data_assets.sandbox.state import SandboxState
from market_data_assets.sandbox.stream import LiveClock, StreamControl, StreamFault

_START_TIMEOUT_S = 30.0


@dataclass(eq=False)
class RunningSandbox:
    """Handle on a started sandbox: its URLs, fault controls, request log and ``stop()``.

    ``requests`` is the live request log (a ``RequestRecord`` per request, appended before the
    response is sent, so a client that got its answer always finds its request logged).
    """

    url: str
    api_key: str | None = field(repr=False)
    state: SandboxState = field(repr=False)
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _runner: web.AppRunner = field(repr=False)

    @property
    def api_url(self) -> str:
        """Base for TARDIS_API_URL."""
        return self.url + "/v1"

    @property
    def datasets_url(self) -> str:
        """Base for TARDIS_DATASETS_URL."""
        return self.url + "/v1"

    @property
    def ws_url(self) -> str:
        """Base for TARDIS_MACHINE_WS_URL (tardis-machine's real-time endpoints)."""
        return "ws://" + self.url.removeprefix("http://")

    @property
    def stream_messages_sent(self) -> int:
        return self.state.stream.sent

    @property
    def stream_connections(self) -> int:
        return self.state.stream.connections

    def add_stream_fault(
        self, kind: str, *, after: int, seconds: float = 60.0, count: int = 3, pause: float = 1.0
    ) -> None:
        """A live-stream accident after ``after`` messages sent in all (kinds: ``STREAM_FAULT_KINDS``)."""
        fault = StreamFault(kind=kind, after=after, seconds=seconds, count=count, pause=pause)
        with self.state.stream.lock:
            self.state.stream.faults.append(fault)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def config(self) -> SandboxConfig:
        return self.state.config

    @property
    def requests(self) -> list[RequestRecord]:
        return self.state.faults.requests

    @property
    def exported_until(self) -> date:
        return self.state.exported_until

    def add_fault(
        self,
        *,
        path_glob: str = "*",
        kind: str,
        times: int | None = None,
        probability: float | None = None,
        retry_after: float = 0.1,
        status: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make matching requests fail: kind is one of ``FAULT_KINDS``
        ("429", "500", "503", "reset", "truncate", "short_gzip", "slow")."""
        self.state.faults.add(
            FaultRule(
                kind=kind,
                path_glob=path_glob,
                times=times,
                probability=probability,
                retry_after=retry_after,
                status=status,
                delay=delay,
            )
        )

    def clear_faults(self) -> None:
        self.state.faults.clear()

    def clear_requests(self) -> None:
        self.state.faults.clear_requests()

    def set_exported_until(self, day: date) -> None:
        """Move ``datasets.exportedUntil`` (days before it become downloadable, new symbols appear)."""
        self.state.exported_until = day

    def stop(self) -> None:
        """Close the listening socket and the loop's thread; safe to call twice."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        future.result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    config: SandboxConfig = SandboxConfig(),
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    live_start_us: int | None = None,
    live_speed: float = 1.0,
    stream_faults: tuple[StreamFault, ...] = (),
) -> RunningSandbox:
    """Start the sandbox on ``host:port`` (0 = a free port) and return once it is listening.

    ``live_start_us``/``live_speed``: the live stream's clock (default: now, real time); it starts
    at the first WebSocket connection.
    """
    state = SandboxState(
        config=config, exported_until=config.exported_until, faults=FaultInjector(seed=config.seed)
    )
    if live_start_us is not None or live_speed != 1.0 or stream_faults:
        clock = state.stream.clock if live_start_us is None else LiveClock(live_start_us)
        clock.speed = live_speed
        state.stream = StreamControl(clock, faults=list(stream_faults))
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    outcome: dict[str, object] = {}

    async def boot() -> None:
        runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # pyright: ignore[reportAttributeAccessIssue]
        outcome["runner"] = runner
        outcome["port"] = sockets[0].getsockname()[1]

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(boot())
        except BaseException as exc:  # report to the starting thread, then end
            outcome["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            # let file generations still running in worker threads finish, then close
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=serve, name=f"tardis-sandbox-{port}", daemon=True)
    thread.start()
    if not ready.wait(_START_TIMEOUT_S):
        raise RuntimeError(f"sandbox did not start listening on {host}:{port} within {_START_TIMEOUT_S}s")
    if "error" in outcome:
        thread.join()
        raise RuntimeError(f"sandbox could not listen on {host}:{port}: {outcome['error']}") from outcome[
            "error"
        ]  # pyright: ignore[reportGeneralTypeIssues]
    return RunningSandbox(
        url=f"http://{host}:{outcome['port']}",
        api_key=config.api_key,
        state=state,
        _loop=loop,
        _thread=thread,
        _runner=outcome["runner"],  # pyright: ignore[reportArgumentType]
    )
