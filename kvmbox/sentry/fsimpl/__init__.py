"""File-system implementations behind the VFS: host passthrough, overlay, tmpfs, procfs, devfs."""
