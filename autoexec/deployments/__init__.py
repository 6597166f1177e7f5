"""Prefect deployments of the runner (see ``prefect.yaml`` at the project root and docs/deployments.md).

The entrypoint is a module path, not a file path: a runner host only needs the ``autoexec``
package installed to run the deployment, wherever (or whether) it has a clone of the project.
"""
