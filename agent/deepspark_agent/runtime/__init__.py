"""Runtimes start a workload with the contract's environment and report how it ended."""
