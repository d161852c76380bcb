"""Keeping a machine healthy: rebase, doctor, file checks, gc, status."""
