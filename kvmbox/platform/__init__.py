"""Trap mechanisms under the Sentry: the Platform / AddressSpace / Context interfaces and their implementations."""
