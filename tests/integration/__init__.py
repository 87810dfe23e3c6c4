"""Integration tests: real stores, PostgreSQL, the Kubernetes API emulator, the runtime image, faults, replicas."""
