"""dhcp-hive-mind: a passive DHCPv4 lease tracker that mirrors granted leases into Redis."""

__version__ = "0.1.0"
