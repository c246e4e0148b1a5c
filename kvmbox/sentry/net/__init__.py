"""Sockets in the Sentry: the common socket file (socket.py), message plumbing (msg.py) and
the address families (unix.py for AF_UNIX; the family table is socket.FAMILIES)."""
