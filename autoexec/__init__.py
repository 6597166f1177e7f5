"""autoexec: the neatlogic automation runner on Prefect 3 (layers: cli > flows > load > engine > ops > transports > jobdir)."""
