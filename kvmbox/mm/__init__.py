"""Guest memory: MemoryFile, frame allocator, page tables, VMAs and the MemoryManager."""
