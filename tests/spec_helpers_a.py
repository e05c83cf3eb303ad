"""Building blocks for the spec-case tests of sections A-D and K (cases 1-45 and 94-96).

`Case` is one spec case: its t0, one tracker session (kept across feeds, so that "after #2 ...
after #4" can be checked), and the capture being built. The message builders follow the spec's
notation (section 0.3): every OFFER and ACK carries 54 and 1=/24 unless told otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from specharness import (
    ACK,
    BCAST,
    DISCOVER,
    NAK,
    OFFER,
    R1,
    REQUEST,
    S1,
    ZERO,
    A,
    Capture,
    Session,
    assert_lease,
    client_msg,
    o_82,
    o_host,
    o_lease,
    o_req,
    o_server,
    rec,
    server_msg,
)

Option = tuple[int, bytes]

# Case 2's relay agent information: 82=[1:"ge-0/0/1", 2:"sw1"], stored as hex.
OPT82 = o_82(b"ge-0/0/1", b"sw1")
CIRCUIT_ID, REMOTE_ID = "67652d302f302f31", "737731"
INFINITE = 4294967295
N1_LEASE = "198.51.100.50"  # the address of case 2


def mac(chaddr: bytes) -> str:
    return chaddr.hex(":")


def offer(xid: int, yi: str, *opts: Option, lease: int | None = 3600, ch: bytes = A,
          server: str = S1, **kw: Any) -> bytes:
    """OFFER {54=server, 1=/24, 51=lease, opts...}."""
    return server_msg(OFFER, xid, ch, *_lease(lease), *opts, server=server, yi=yi, **kw)


def ack(xid: int, yi: str, *opts: Option, lease: int | None = 3600, ch: bytes = A,
        server: str = S1, **kw: Any) -> bytes:
    """ACK {54=server, 1=/24, 51=lease, opts...}; lease=None leaves option 51 out."""
    return server_msg(ACK, xid, ch, *_lease(lease), *opts, server=server, yi=yi, **kw)


def nak(xid: int, *opts: Option, ch: bytes = A, server: str = S1, **kw: Any) -> bytes:
    """NAK {54=server, opts...}: a NAK carries no subnet mask."""
    return server_msg(NAK, xid, ch, *opts, server=server, mask=None, **kw)


def _lease(lease: int | None) -> tuple[Option, ...]:
    return () if lease is None else (o_lease(lease),)


class Case:
    """One spec case: t0, a tracker session on the scratch Redis, and the capture being built."""

    def __init__(self, redis_url: str, tmp_path: Path, *, t0: int | None = None,
                 **config: Any) -> None:
        self.redis_url = redis_url
        self.tmp_path = tmp_path
        self.config = config
        self.t0 = int(time.time()) if t0 is None else t0
        self._runs = 0
        self.session = self._start()
        self._capture = Capture(t0=self.t0)

    def _start(self) -> Session:
        self._runs += 1
        workdir = self.tmp_path / f"run{self._runs}"
        workdir.mkdir()
        return Session(self.redis_url, workdir, **self.config)

    def add(self, delta: float, data: bytes, src: str = ZERO, dst: str = BCAST,
            sport: int | None = None, dport: int | None = None) -> Case:
        self._capture.add(delta, data, src, dst, sport, dport)
        return self

    def feed(self) -> None:
        """Run the packets added since the last feed through the tracker."""
        self.session.feed(self._capture)
        self._capture = Capture(t0=self.t0)

    def restart(self) -> None:
        """Stop the tracker and start a new one on the same Redis (pending transactions lost)."""
        self.session.close()
        self.session = self._start()

    def counter(self, name: str) -> int:
        return self.session.tracker.counters[name]

    def rec(self, ip: str, chaddr: bytes | None, server: str, xid: int, delta: float,
            lease: int, **extra: Any) -> dict[str, str]:
        """REC(ip, client, server, xid, delta, T) + extra fields, for this case's t0."""
        return rec(ip, None if chaddr is None else mac(chaddr), server, xid, self.t0, delta,
                   lease, **extra)

    def dora(self, xid: int, yi: str, *, ch: bytes = A, server: str = S1, ack_at: float = 0.3,
             lease: int | None = 3600, offer_lease: int | None = None,
             client_opts: Iterable[Option] = (), ack_opts: Iterable[Option] = (),
             mask: int | None = 24) -> Case:
        """DISCOVER, OFFER, REQUEST {50, 54} and ACK on the servers' segment, 0.1 s apart, ending
        with the ACK at +ack_at; client_opts go into the DISCOVER and the REQUEST."""
        start = ack_at - 0.3
        extra = tuple(client_opts)
        self.add(start, client_msg(DISCOVER, xid, ch, *extra))
        self.add(start + 0.1, offer(xid, yi, lease=offer_lease or lease, ch=ch, server=server,
                                    mask=mask), src=server)
        self.add(start + 0.2, client_msg(REQUEST, xid, ch, o_req(yi), o_server(server), *extra))
        self.add(ack_at, ack(xid, yi, *ack_opts, lease=lease, ch=ch, server=server, mask=mask),
                 src=server)
        return self

    def setup_lease(self, ip: str, *, ch: bytes = A, server: str = S1, xid: int = 0xABCD,
                    at: float = -100, lease: int = 3600, hostname: str | None = None,
                    client_id: bytes | None = None, mask: int | None = 24) -> dict[str, str]:
        """A Setup state `L(ip) = REC(ip, ch, server, xid, at, lease)` (+hostname, +client_id),
        written through the tracker by a four-way exchange; checked, and returned."""
        opts: list[Option] = []
        extra: dict[str, str] = {}
        if hostname is not None:
            opts.append(o_host(hostname))
            extra.update(hostname=hostname, hostname_src="req12")
        if client_id is not None:
            opts.append((61, client_id))
            extra["client_id"] = client_id.hex()
        self.dora(xid, ip, ch=ch, server=server, ack_at=at, lease=lease, client_opts=opts,
                  mask=mask)
        self.feed()
        expected = self.rec(ip, ch, server, xid, at, lease, **extra)
        assert_lease(self.session.client, expected,
                     capture_clock=self.config.get("capture_clock", True))
        return expected

    def relayed_exchange(self, numbers: Iterable[int], *, xid: int, yi: str, relay: str,
                         base: float = 0.0, hostname: str | None = "alpha",
                         agent: Option | None = OPT82, ch: bytes = A, server: str = S1,
                         lease: int = 3600) -> Case:
        """The packets `numbers` (in that order) of case 2: a four-way exchange through `relay`,
        captured on both interfaces of the relay host, at base + case 2's offsets."""
        host = () if hostname is None else (o_host(hostname),)
        a82 = () if agent is None else (agent,)
        req = (o_req(yi), o_server(server), *host)
        up = {"src": relay, "dst": server, "sport": 67, "dport": 67}
        back = {"src": server, "dst": relay, "sport": 67, "dport": 67}
        down = {"src": relay, "dst": yi, "sport": 67, "dport": 68}
        packets: dict[int, tuple[float, bytes, dict[str, Any]]] = {
            1: (0.000, client_msg(DISCOVER, xid, ch, *host), {}),
            2: (0.001, client_msg(DISCOVER, xid, ch, *host, *a82, gi=relay, hops=1), up),
            3: (0.010, offer(xid, yi, *a82, lease=lease, ch=ch, server=server, gi=relay), back),
            4: (0.011, offer(xid, yi, lease=lease, ch=ch, server=server, gi=relay), down),
            5: (0.100, client_msg(REQUEST, xid, ch, *req), {}),
            6: (0.101, client_msg(REQUEST, xid, ch, *req, *a82, gi=relay, hops=1), up),
            7: (0.110, ack(xid, yi, *a82, lease=lease, ch=ch, server=server, gi=relay), back),
            8: (0.111, ack(xid, yi, lease=lease, ch=ch, server=server, gi=relay), down),
        }
        for n in numbers:
            delta, data, addresses = packets[n]
            self.add(base + delta, data, **addresses)
        return self


def case2_record(c: Case, delta: float = 0.11, **changes: Any) -> dict[str, str]:
    """L(198.51.100.50) as case 2 expects it after #7 (its ACK at +delta), with changes."""
    fields: dict[str, Any] = {
        "hostname": "alpha", "hostname_src": "req12", "giaddr": R1,
        "circuit_id": CIRCUIT_ID, "remote_id": REMOTE_ID,
    }
    fields.update(changes)
    xid = fields.pop("xid", 0x1002)
    server = fields.pop("server", S1)
    lease = fields.pop("lease", 3600)
    return c.rec(N1_LEASE, A, server, xid, delta, lease, **fields)
