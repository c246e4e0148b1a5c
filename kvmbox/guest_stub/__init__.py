"""The ring-0 guest stub: its assembly source, build and the guest layout constants."""
