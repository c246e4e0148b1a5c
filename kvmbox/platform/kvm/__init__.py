"""The KVM platform: guest ring 3 under the ring-0 stub, one exit per trap."""
