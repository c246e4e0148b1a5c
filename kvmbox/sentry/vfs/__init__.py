"""The Sentry's virtual file system: nodes, mounts and path resolution (see docs/vfs.md)."""
