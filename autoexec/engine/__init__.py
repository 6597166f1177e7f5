"""The job loop, groups, the phase runner and the node executor, on plain thread pools, reporting typed events."""
