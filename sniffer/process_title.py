"""A Redis password given in a URL on the command line, hidden from other users as soon as the
process starts."""

import sys

from sniffer.connection import mask_url
from sniffer.console import err


def hide_url_passwords() -> None:
    """A password in a URL on the command line can be read by every user (ps, /proc/PID/cmdline):
    mask it in the process title at once, and warn that it was visible until then."""
    urls = {value for arg in sys.argv[1:]
            if _has_password(value := arg.partition("=")[2] if arg.startswith("--") else arg)}
    if not urls:
        return
    import setproctitle  # only when needed: it rewrites the process's memory of its argv

    title = setproctitle.getproctitle()
    for url in urls:
        title = title.replace(url, mask_url(url))
    setproctitle.setproctitle(title)
    err.print("warning: a Redis password on the command line can be read by other users; use "
              "REDIS_PASSWORD or --redis-password-file.")


def _has_password(arg: str) -> bool:
    try:
        return mask_url(arg) != arg
    except ValueError:  # not a URL at all ("//[", say)
        return False
