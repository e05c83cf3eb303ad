"""The live view of current leases, and the tables the other commands print.

Layers, each in its module: `render` (untrusted strings made safe, durations, the `leases` and
`history` tables), `model` (`ViewModel`: the leases in memory, kept in display order, with
recent changes and counters), `feed` (`Feed`: keeps the model current from the store, a bounded
amount of work per call), `screen` (`render`: a pure function of the model, the UI state and
the time) and `terminal` (`run_view`: the terminal, keys and the refresh loop).

`run_view` is imported from `sniffer.view.terminal` by the commands that show the view: the
others (`replay` above all) would load the terminal, the model and the feed for nothing.
"""

from sniffer.view.render import (
    duration,
    history_table,
    holder_table,
    holdings_table,
    hostname_width,
    lease_table,
    moment,
    safe,
)

__all__ = ["duration", "history_table", "holder_table", "holdings_table", "hostname_width",
           "lease_table", "moment", "safe"]
