"""The ``LAYERENV_HOME`` layout: bases, registry, locks and leases, node records, atomic file steps."""
