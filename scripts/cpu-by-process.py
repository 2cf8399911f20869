#!/usr/bin/env python3
"""Runs a command and reports the CPU time every process on the machine spent while it ran,
grouped by kind: Chromium's browser, GPU and renderer processes, FFmpeg, helios-infra, other.

Usage: python3 scripts/cpu-by-process.py -- COMMAND [ARGS...]
Prints one JSON object: {"wall_s": ..., "cpu_s": {kind: seconds}}.

Why not getrusage or `time`: Chromium's helper processes are reaped by nobody that waits
for them once the browser is killed, so a parent's rusage misses most of Chromium's CPU.
This samples /proc every 50 ms instead; a process that starts and ends between two samples
is missed, which only short-lived helpers (ffprobe) do.
"""
import json
import os
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def kind(pid: str) -> str | None:
    try:
        stat = open(f"/proc/{pid}/stat").read()
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    if "chromium" in comm or "chrome" in comm:
        for t in ("gpu-process", "renderer", "utility", "zygote"):
            if f"--type={t}" in cmd:
                return f"chromium {t}"
        return "chromium browser"
    if comm.startswith("ffmpeg") or comm.startswith("ffprobe"):
        return "ffmpeg"
    if comm.startswith("helios-infra"):
        return "helios-infra"
    if comm.startswith("node"):
        return "node"
    return None  # kernel threads and everything else on the machine: not counted


def ticks(pid: str) -> int:
    f = open(f"/proc/{pid}/stat").read()
    f = f[f.rindex(")") + 2 :].split()
    return int(f[11]) + int(f[12])


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    before = {p: ticks(p) for p in os.listdir("/proc") if p.isdigit() and kind(p)}
    seen: dict[str, tuple[str, int]] = {}
    start = time.monotonic()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while child.poll() is None:
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                k = seen[p][0] if p in seen else kind(p)
                if k:
                    seen[p] = (k, ticks(p))
            except (OSError, ValueError, IndexError):
                pass
        time.sleep(0.05)
    wall = time.monotonic() - start
    cpu: dict[str, float] = {}
    for p, (k, t) in seen.items():
        cpu[k] = cpu.get(k, 0.0) + (t - before.get(p, 0)) / HZ
    print(json.dumps({"wall_s": round(wall, 3), "exit": child.returncode,
                      "cpu_s": {k: round(v, 2) for k, v in sorted(cpu.items())}}))


if __name__ == "__main__":
    main()
