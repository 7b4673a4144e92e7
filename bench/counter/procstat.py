"""Prints the CPU time (clock ticks) every user-space process has used so far,
one `pid ticks name` line each. run.sh takes one snapshot before and one after
each wrk run; report.py diffs them to show how much CPU *other* work (a build
in another shell, say) took during the measurement."""

import os

for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
        if not cmdline[0]:
            continue  # kernel thread
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        continue  # exited meanwhile
    # Fields after the parenthesised name: state is 3rd, utime 14th, stime 15th.
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    name = os.path.basename(cmdline[0].decode(errors="replace"))
    args = b" ".join(cmdline[1:3]).decode(errors="replace")
    print(pid, ticks, name, args)
