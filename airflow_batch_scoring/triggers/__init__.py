"""Triggers of the deferrable operators (Kubernetes Job waiting)."""
