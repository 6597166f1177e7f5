"""The job directory contract: layout, node status and outputs, logs, the job's lock, MongoDB mirror, report."""
