"""DeepSpark Bench's framework-free core: the workload contract, the result schemas, the
metrics and their assessment, signing and verification, safe archives, and the reports.
The agent and the collector both build on it; it imports neither."""
