"""Linux x86-64 ABI data: constants, errno names, syscall numbers, struct layouts. No logic."""
