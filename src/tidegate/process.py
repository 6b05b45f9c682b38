"""Process life of `tidegate serve`: the listening socket, the workers that share it, and how
they stop.

Stopping: SIGTERM or SIGINT (to the master, a worker, or the whole process group, as a terminal's
Ctrl-C sends it) makes each worker answer /ready with 503, close its listening socket, and let
requests in flight finish for up to `shutdown_timeout`; then it exits 0, and so does the master.
A worker whose master dies, however it dies (kill -9 included), stops the same way: the kernel
sends it SIGTERM (Linux's PR_SET_PDEATHSIG) and a once-a-second check of its parent catches the
rest, so no orphan keeps the port and a restart can bind it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
import traceback

from .config import Settings

log = logging.getLogger("tidegate")

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_CHECK_INTERVAL = 1.0  # seconds between a worker's checks that its master lives
KILL_GRACE = 5.0  # seconds past shutdown_timeout before the master kills a worker that hangs
QUICK_DEATH = 5.0  # a worker that dies younger than this counts as crashing at start-up


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run_worker(settings: Settings, sock: socket.socket, master: int | None = None) -> None:
    """Serve on `sock` until a stop signal (or the death of `master`, if given), then finish
    in-flight requests and return."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(settings, sock, master))


async def _serve(settings: Settings, sock: socket.socket, master: int | None) -> None:
    from aiohttp import web

    from .app import make_app
    from .web import health

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Idempotent: the same stop arrives twice when both the process group and the master
        # signal a worker.
        loop.add_signal_handler(signum, stop.set)
    app = make_app(settings)
    # keepalive_timeout also bounds a connection that never completes its request's headers.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_timeout,
                           keepalive_timeout=settings.client_timeout)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        watcher = asyncio.ensure_future(_watch_master(master, stop)) if master is not None else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
        health.begin_shutdown(app)
    finally:
        await runner.cleanup()  # closes the listener, waits up to shutdown_timeout for requests


async def _watch_master(master: int, stop: asyncio.Event) -> None:
    while os.getppid() == master:
        await asyncio.sleep(PARENT_CHECK_INTERVAL)
    log.warning("the master process %d is gone; worker %d stops", master, os.getpid())
    stop.set()


def _die_with_parent(master: int) -> None:
    """Ask the kernel for SIGTERM when the master dies (Linux); elsewhere the periodic check
    in _watch_master is all there is."""
    if sys.platform.startswith("linux"):
        try:
            # Imported here, and any failure tolerated: under systemd's MemoryDenyWriteExecute
            # importing ctypes may fail, and the parent check below still holds.
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except Exception:
            pass
    if os.getppid() != master:  # it died before prctl took effect
        os._exit(0)


def supervise(settings: Settings, sock: socket.socket, workers: int) -> int:
    """Fork workers that share the listening socket (the kernel spreads connections across
    them) and the on-disk caches; restart any that dies; stop them all on SIGTERM/SIGINT."""
    master = os.getpid()
    children: dict[int, float] = {}  # pid -> when it started
    deadline: float | None = None  # set once stopping: when hanging workers get SIGKILL
    code = 0
    quick_deaths = 0

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _die_with_parent(master)
            status = 0
            try:
                run_worker(settings, sock, master)
            except BaseException:
                traceback.print_exc()  # a worker's death must leave its reason in the log
                status = 1
            finally:
                os._exit(status)
        children[pid] = time.monotonic()

    def stop(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal deadline
        if deadline is not None:
            return
        deadline = time.monotonic() + settings.shutdown_timeout + KILL_GRACE
        sock.close()  # the master's copy; the port is free once the workers close theirs
        for pid in children:
            _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        spawn()
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            if deadline is not None and time.monotonic() > deadline:
                log.error("workers %s did not stop within shutdown_timeout; killing them",
                          ", ".join(map(str, children)))
                for child in children:
                    _signal(child, signal.SIGKILL)
                code = 1
                deadline = float("inf")
            time.sleep(0.1)
            continue
        started = children.pop(pid, None)
        if started is None:
            continue  # not a worker: an orphan reparented to us, as a container's PID 1
        _forget_metrics_of(pid)
        if deadline is not None:
            continue  # stopping: no restarts
        lived = time.monotonic() - started
        quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH else 0
        if quick_deaths >= 5:  # crashing at start-up: restarting will not help
            log.error("workers keep dying at start-up (last status %d); stopping", status)
            stop()
            code = 1
            continue
        log.error("worker %d exited (status %d); starting another", pid, status)
        time.sleep(0.5)
        if deadline is None:  # a stop signal may have come during the pause
            spawn()
    return code


def _forget_metrics_of(pid: int) -> None:
    """A dead worker's live gauges leave the metrics (its counters stay: they happened)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
