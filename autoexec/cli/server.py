"""``autoexec-server start|stop|status``: the embedded local Prefect server and the machine's recorder
process together. A command of its own, so the Prefect API lookup (conf/prefect_server.py) and the
recorder (flows/recorder.py) need not import each other."""
from __future__ import annotations

import argparse
import os
import sys

from autoexec.conf.prefect_server import ensure_api, healthy, read_state, stop_server, ui_url
from autoexec.conf.settings import SettingsError, load_settings
from autoexec.flows.recorder import ensure_recorder, recorder_running, stop_recorder


def main(argv: list[str] | None = None) -> int:
    """``autoexec-server start|stop|status`` for the embedded local Prefect server."""
    parser = argparse.ArgumentParser(prog="autoexec-server", description="Start, stop or show the embedded local Prefect server and the machine's recorder.")
    parser.add_argument("action", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    try:
        home = load_settings().autoexec_home()
    except SettingsError as exc:
        print(f"autoexec-server: error: {exc}", file=sys.stderr)
        return 2
    if args.action == "start":
        os.environ.pop("PREFECT_API_URL", None)
        url = ensure_api(home)
        problem = ensure_recorder(home, idle_secs="0")  # started with the server, lives as long
        print(f"API {url}\nUI  {ui_url(url or '')}")
        if problem:
            print(f"recorder not started: {problem}", file=sys.stderr)
        return 0
    if args.action == "stop":
        recorder = stop_recorder(home)
        print("stopped" if stop_server(home) or recorder else "not running")
        return 0
    state = read_state(home)
    alive = bool(state and healthy(state["url"]))
    if alive and state:
        print(f"running\nAPI {state['url']}\nUI  {ui_url(state['url'])}\n"
              f"recorder {'running' if recorder_running(home) else 'not running (the next CLI job starts it)'}")
    else:
        print("not running")
    return 0 if alive else 3


if __name__ == "__main__":
    sys.exit(main())
