"""Where autoexec lives, its settings, what config.ini says, errors, retries, secrets and masking, and which Prefect API a job uses."""
