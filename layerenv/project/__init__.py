"""A project venv layered on a base: what it declares, the link (boot, stubs, constraints), its build."""
