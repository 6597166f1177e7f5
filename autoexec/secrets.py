"""RC4 secrets as the neatlogic console and tools encode them (placeholder: see issue 3)."""
from __future__ import annotations

from pathlib import Path


def decrypt_config_values(values: dict[str, str], path: Path) -> dict[str, str]:
    return values
