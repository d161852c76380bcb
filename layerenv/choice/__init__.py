"""The choice: the release table, GPU coverage, and ``choose(machine, policy) -> Decision``. Pure."""
