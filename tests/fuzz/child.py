"""The fuzz child process: reads one JSON request per line, runs the format's check on the mutant, answers with
one JSON line (`tests.fuzz.harness` explains the outcomes). Run as `python -m tests.fuzz.child`."""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from pathlib import Path


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    from spikedata.errors import PicklableError  # the base of SpikedataError and Hm2bpError
    from tests.fuzz.formats import BY_NAME, warm_up

    warm_up()  # imports and numba compilation before the memory limit
    headroom = int(os.environ.get("FUZZ_MEMORY_HEADROOM", str(2 << 30)))
    limit = _vm_size() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    print(json.dumps({"ready": True, "memory_limit": limit}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        fmt = BY_NAME[req["format"]]
        path = Path(req["path"])
        try:
            summary = fmt.check(path, Path(req["seed"]), req["context"], req["op"])
            answer = {"outcome": "accepted", "detail": str(summary)[:300]}
        except AssertionError as exc:
            answer = {"outcome": "implausible", "detail": str(exc)[:500]}
        except PicklableError as exc:
            named = fmt.names_input(str(exc), path)
            answer = {"outcome": "error" if named else "unnamed", "type": type(exc).__name__,
                      "detail": str(exc)[:500]}
        except BaseException as exc:  # noqa: BLE001 - the point: anything else is a finding
            if isinstance(exc, KeyboardInterrupt):
                raise
            tb = traceback.format_exc().splitlines()
            answer = {"outcome": "generic", "type": f"{type(exc).__module__}.{type(exc).__name__}",
                      "detail": f"{str(exc)[:300]} | {' / '.join(tb[-4:])[:600]}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
