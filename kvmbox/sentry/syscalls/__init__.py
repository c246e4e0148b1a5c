"""The syscall table (data) and one module of handlers per area."""
