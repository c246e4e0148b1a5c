"""The Sentry: kvmbox's Linux ABI implementation (tasks, syscalls, loader, files)."""
