"""Capture supervision: one interface captured while the sniffer runs, tcpdump's pcap records
forwarded to a tshark (LiveDecoder), whatever stops restarted.

Scheduled restarts (tshark's memory grows with every frame it has seen) replace tcpdump and
tshark together without a gap: the new tcpdump starts while the old one still runs, the old one
stops once the new one captures, and the new one's first packets that the old one already
delivered are dropped, recognised by their bytes and kernel timestamp, which both copies share.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable

from sniffer.capturer import CaptureEnd, CaptureRun, Echoes, LiveDecoder, permission_message
from sniffer.dhcp import Datagram
from sniffer.logs import log
from sniffer.metrics import Metrics
from sniffer.tshark import CaptureError

# Seconds between restarts of a capture that keeps failing; the first restart after a capture
# that ran is immediate, and a run this long resets the backoff.
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
# A capture asked to stop keeps running this long first: tcpdump, in immediate mode, reads each
# packet as it comes, but one short of CPU lags behind the kernel, and what it has not read when
# it stops is lost (uncounted). In a scheduled handover, the new tcpdump captures meanwhile.
DRAIN = 0.4
POLL = 0.2  # how often waiting threads look up
ROTATE_FRAMES = 1_000_000  # a scheduled restart also comes after this many frames
STOP_WAIT = 10.0  # seconds the captures get to deliver their last packets at a stop
DECODER_MIN_LIFE = 5.0  # seconds: a replaced tshark that exits sooner is failing, not killed


class InterfaceWatch:
    """Captures one interface while the sniffer runs: tcpdump -> records -> tshark -> sink.

    When tcpdump ends (killed, or the interface is gone) it is restarted with backoff, and the
    loss and the recovery are logged once each; a tshark that dies is replaced at once. At
    start-up a failure is final instead: `wait_started` reports it.
    """

    def __init__(self, interface: str, sink: Callable[[list[Datagram]], None], metrics: Metrics,
                 *, ports: tuple[int, ...], buffer_mib: int, restart_every: float,
                 start_timeout: float) -> None:
        self.interface = interface
        self.ports = ports
        self.buffer_mib = buffer_mib  # tcpdump -B
        self.restart_every = restart_every  # seconds between scheduled restarts; 0: never
        self.start_timeout = start_timeout  # seconds a (re)started tcpdump gets to capture
        self.metrics = metrics
        metrics.watch(interface)
        self._sink = sink
        self._started = threading.Event()
        self._startup_error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._runs: list[CaptureRun] = []  # the current run, and the next one in a handover
        self._decoder: LiveDecoder | None = None  # the tshark the current run writes to
        self._replaced_at = -math.inf  # when a dead tshark was last replaced between packets
        self._decoders: list[LiveDecoder] = []  # every tshark that may still be decoding
        self._thread = threading.Thread(target=self._supervise, name=f"watch-{interface}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_started(self, timeout: float) -> str | None:
        """Wait for the first capture; None once it runs, else why it cannot."""
        if not self._started.wait(timeout):
            return f"tcpdump did not start capturing on {self.interface} within {timeout:g} s"
        return self._startup_error

    def stop(self) -> None:
        """Stop capturing; the thread ends once everything captured has gone to the sink."""
        self._stop.set()
        with self._lock:
            for run in self._runs:
                run.stop()

    def kill(self) -> None:
        self._stop.set()
        with self._lock:
            for run in self._runs:
                run.kill()
            for decoder in self._decoders:
                decoder.kill()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- the supervisor thread --

    def _supervise(self) -> None:
        backoff = 0.0  # a capture that was running is restarted at once
        lost_at: float | None = None
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                end, captured, message = self._capture(lost_at)
                if not self._started.is_set():  # the first run never captured
                    self._startup_error = (
                        permission_message(self.interface, end)
                        if end is not None and end.permission
                        else f"cannot capture on {self.interface}: {message}")
                    self._started.set()
                    return
                if self._stop.is_set():
                    break
                if captured:
                    lost_at = time.monotonic()
                    log.warning("capture on %s stopped: %s; restarting it", self.interface,
                                message.rstrip("."))
                    self.metrics.capture_restarts.labels(self.interface, "tcpdump",
                                                         "exited").inc()
                    if time.monotonic() - started >= BACKOFF_MAX:
                        backoff = 0.0
                else:
                    log.debug("capture on %s still failing: %s", self.interface, message)
                self._stop.wait(backoff)
                backoff = min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
        finally:
            self._started.set()
            for decoder in self._decoders:
                decoder.wait()

    def _capture(self, lost_at: float | None) -> tuple[CaptureEnd | None, bool, str]:
        """One spell of capturing (see _forward): how its last tcpdump ended, whether it ever
        captured, and what went wrong in one line. A bug is logged, not fatal: the supervisor
        tries again, as after any other failure."""
        try:
            end, captured = self._forward(lost_at)
            return end, captured, end.message or "tcpdump exited"
        except CaptureError as error:
            return None, False, str(error)
        except Exception as error:
            log.exception("capture on %s failed", self.interface)
            return None, False, f"{type(error).__name__}: {error}"

    def _start_run(self) -> CaptureRun:
        run = CaptureRun(self.interface, self.ports, self.buffer_mib)
        with self._lock:
            self._runs.append(run)
            if self._stop.is_set():
                run.stop()
        return run

    def _forget(self, run: CaptureRun) -> None:
        with self._lock:
            self._runs.remove(run)

    def _forward(self, lost_at: float | None) -> tuple[CaptureEnd, bool]:
        """Forward the records of one tcpdump run, and of the runs that replace it on schedule, to
        tshark until the current run ends: how that one ended, and whether the capture ever ran.
        On an error, the runs still going are killed."""
        try:
            return self._forward_runs(self._start_run(), lost_at)
        except BaseException:
            with self._lock:
                runs = list(self._runs)
            for run in runs:
                run.abandon()
                self._forget(run)
            self._finish_decoder()
            raise

    def _forward_runs(self, run: CaptureRun, lost_at: float | None) -> tuple[CaptureEnd, bool]:
        next_run: CaptureRun | None = None
        header = b""  # the pcap file header of the run being forwarded
        overlap = Echoes()  # packets the old run delivered during a handover
        duplicates = Echoes()  # ... which the new run will deliver again
        captured = False
        frames = 0
        rotate_at = self._next_rotation()
        next_started = stop_old_at = math.inf
        while True:
            now = time.monotonic()
            if (next_run is None and captured and not self._stop.is_set()
                    and (now >= rotate_at or frames >= ROTATE_FRAMES)):
                next_run, next_started, overlap = self._start_next(), now, Echoes(run.header)
                if next_run is None:
                    rotate_at, frames = now + BACKOFF_MAX, 0
            if next_run is not None and math.isinf(stop_old_at):
                if next_run.ready.is_set():
                    stop_old_at = now + DRAIN
                elif next_run.exited() or now - next_started > self.start_timeout:
                    self._give_up(next_run, "the scheduled restart")
                    next_run, rotate_at, frames = None, now + BACKOFF_MAX, 0
            if now >= stop_old_at:
                run.stop()
            try:
                chunk = run.take(POLL)
            except queue.Empty:
                self._replace_dead_decoder(header)
                continue
            if chunk is None:
                end = self._ended(run)
                if next_run is None or not next_run.ready.is_set():
                    if next_run is not None:
                        self._give_up(next_run, None)
                    self._finish_decoder()
                    self.metrics.capture_up.labels(self.interface).set(0)
                    return end, captured
                self.metrics.capture_restarts.labels(self.interface, "tcpdump",
                                                     "scheduled").inc()
                log.debug("capture on %s restarted on schedule", self.interface)
                run, header, next_run = next_run, next_run.header, None
                duplicates, overlap = overlap, Echoes()
                frames, rotate_at, stop_old_at = 0, self._next_rotation(), math.inf
                self._finish_decoder()
                continue
            if not captured:  # the run's first chunk: tcpdump captures
                captured, header = True, run.header
                self._capturing(lost_at)
            if duplicates:
                chunk = duplicates.drop(chunk)
            if next_run is not None:
                overlap.add(chunk)
            frames += len(chunk)
            if chunk or self._decoder is None:
                self._write(chunk, header)

    def _next_rotation(self) -> float:
        every = self.restart_every
        return time.monotonic() + every if every > 0 else math.inf

    def _start_next(self) -> CaptureRun | None:
        try:
            return self._start_run()
        except CaptureError as error:
            log.warning("scheduled restart of the capture on %s failed: %s", self.interface,
                        error)
            return None

    def _give_up(self, run: CaptureRun, what: str | None) -> None:
        """Kill a replacement run that did not start capturing; say so if `what` failed."""
        end = run.abandon()
        self._forget(run)
        if what is not None:
            log.warning("%s of the capture on %s failed: %s; keeping the running one", what,
                        self.interface, end.message or "tcpdump did not start")

    def _capturing(self, lost_at: float | None) -> None:
        self.metrics.capture_up.labels(self.interface).set(1)
        if not self._started.is_set():
            log.info("capturing on %s", self.interface)
            self._started.set()
        elif lost_at is not None:
            log.info("capture on %s resumed after %.0f s", self.interface,
                     time.monotonic() - lost_at)

    def _ended(self, run: CaptureRun) -> CaptureEnd:
        end = run.end()
        self._forget(run)
        if end.dropped:
            detail = ", ".join(f"{place} {count}" for place, count in end.drops.items() if count)
            log.warning("capture on %s dropped %d packets (%s)", self.interface, end.dropped,
                        detail)
            for place, count in end.drops.items():
                if count:
                    self.metrics.capture_drops.labels(self.interface, place).inc(count)
        return end

    def _write(self, records: list[bytes], header: bytes) -> None:
        """Pass packet records to tshark, starting one (header first) if there is none or it
        died."""
        for attempt in range(2):
            fresh = self._decoder is None
            decoder = self._decoder if self._decoder is not None else self._new_decoder()
            try:
                decoder.write([header, *records] if fresh else records)
                return
            except CaptureError:
                if self._stop.is_set():  # killed while stopping: no new tshark now
                    raise
                self._lost(decoder)
                if attempt:
                    raise CaptureError("tshark keeps exiting") from None

    def _replace_dead_decoder(self, header: bytes) -> None:
        """Replace a tshark that died between packets now, not when the next one comes. If the
        last one replaced so also died within DECODER_MIN_LIFE, tshark is failing: CaptureError,
        and the supervisor restarts the capture with backoff."""
        decoder = self._decoder
        if decoder is None or not decoder.done() or self._stop.is_set() or not header:
            return
        self._lost(decoder)
        if time.monotonic() - self._replaced_at < DECODER_MIN_LIFE:
            raise CaptureError("tshark keeps exiting")
        self._new_decoder().write([header])
        self._replaced_at = time.monotonic()

    def _lost(self, decoder: LiveDecoder) -> None:
        decoder.wait(STOP_WAIT)
        self._decoder = None
        self.metrics.capture_restarts.labels(self.interface, "tshark", "exited").inc()
        log.warning("tshark for %s exited (%s); starting another", self.interface,
                    decoder.failure or "without an error")

    def _new_decoder(self) -> LiveDecoder:
        previous = self._decoders[-1] if self._decoders else None
        decoder = LiveDecoder(self.ports, f"tshark-{self.interface}", self._sink, previous)
        with self._lock:
            self._decoders = [old for old in self._decoders if not old.done()] + [decoder]
        self._decoder = decoder
        return decoder

    def _finish_decoder(self) -> None:
        if self._decoder is not None:
            self._decoder.finish()
            self._decoder = None
