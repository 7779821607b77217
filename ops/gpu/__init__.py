"""Shipping the GPU check to a lent machine without a registry: the bundle, the bare check, the rehearsal."""
