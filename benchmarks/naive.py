"""The naive baseline: pyshark's FileCapture with a display filter, one HSET and one EXPIRE per
ACK, no transaction tracking. Run as `python benchmarks/naive.py FILE REDIS_URL`; prints the
number of ACKs written."""

from __future__ import annotations

import sys

import pyshark
import redis
from redis.typing import EncodableT

ACK = "5"


def main(path: str, url: str) -> None:
    client = redis.Redis.from_url(url)
    capture = pyshark.FileCapture(path, display_filter="dhcp")
    written = 0
    try:
        for packet in capture:
            dhcp = packet.dhcp
            if dhcp.option_dhcp != ACK:
                continue
            fields: dict[EncodableT, EncodableT] = {"mac": str(dhcp.hw_mac_addr)}
            hostname = getattr(dhcp, "option_hostname", None)
            if hostname is not None:
                fields["hostname"] = str(hostname)
            client.hset(dhcp.ip_your, mapping=fields)
            client.expire(dhcp.ip_your, int(dhcp.option_ip_address_lease_time))
            written += 1
    finally:
        capture.close()
        client.close()
    print(written)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
