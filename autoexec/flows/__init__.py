"""Prefect: the deployment's flow, the machine's recorder process and the Prefect record it writes."""
