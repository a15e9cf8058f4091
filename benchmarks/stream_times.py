"""Pass a process's output through to a log file and note when things first appeared.

Reads bytes from standard input until it closes (tqdm's carriage returns included), writes them
to LOG, and writes to TIMES a JSON object of seconds since START (a Unix time) until the first
byte, the first progress bar (``NN%|``) and the first of each ``stage NAME: ...`` log line.

    irdistill run R 2>&1 | python benchmarks/stream_times.py START LOG TIMES
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

BAR = re.compile(rb"\d+%\|")
STAGE = re.compile(rb"stage ([^:\n]+): (started|done in [^\n\r]+|skipped[^\n\r]*)")


def main() -> None:
    start, log_path, times_path = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    times: dict[str, object] = {"stages": {}}
    tail = b""
    with open(log_path, "ab") as log:
        while chunk := os.read(0, 65536):
            now = round(time.time() - start, 2)
            log.write(chunk)
            log.flush()
            times.setdefault("first_output_s", now)
            window = tail + chunk
            if "first_progress_bar_s" not in times and BAR.search(window):
                times["first_progress_bar_s"] = now
            for match in STAGE.finditer(window):
                name, what = (m.decode(errors="replace") for m in match.groups())
                times["stages"].setdefault(name, {}).setdefault(what.split(" ")[0], now)  # type: ignore[union-attr]
                if what.startswith("done in"):
                    took, _, peak = what[len("done in ") :].partition("; peak RSS so far ")
                    times["stages"][name]["took"] = took  # type: ignore[index]
                    if peak.endswith(" GiB"):
                        times["stages"][name]["peak_rss_gib"] = float(peak[: -len(" GiB")])  # type: ignore[index]
            tail = window[-200:]
            with open(times_path, "w") as out:
                json.dump(times, out, indent=1)


if __name__ == "__main__":
    main()
