"""Facts about the machine: GPUs, driver, ROCm, interpreters. Read-only, sysroot-aware probes."""
