"""What one job invocation shares across groups, phases and nodes: its spec, runtime, variables, control, thresholds, services, run links."""
