"""What a `jpki` process costs before and around its work: `jpki --help` and a `jpki crl publish`
of one shard on a small data directory, for one or more source trees, measured in the same run.

    .venv/bin/python -m bench.cli_startup [--tree NAME=DIR ...] [--data-dir D] [--repeat 15]
                                          [--json] [--save FILE]

Each tree (default: this checkout, ``after=.``) is run as ``python -m api.cli`` with
``PYTHONPATH=DIR``, from the interpreter running the bench, so that trees differ only in their
own code. Bytecode is cached under a directory per tree (``PYTHONPYCACHEPREFIX``), written by
one warm-up run and read by every measured run, as an installed package's compiled modules are;
``PYTHONDONTWRITEBYTECODE`` is dropped for the same reason. Without ``--data-dir``, ``jpki
init`` makes one in a temporary directory with the last tree (SoftHSM token and PINs in it).

Measured per command and tree, the trees interleaved in ``--repeat`` rounds: wall time from the
parent, the child's user + system CPU time (``os.wait4``), its peak RSS, and — in one extra run
under ``-X importtime`` — how many modules it imported and how long the imports took (the
importtime figures include the tracing's own overhead). Medians and minimums are reported: on a
shared machine the minimum is the better estimate of the cost, the median of what one sees.

The commands:

- ``--help``: ``jpki --help``.
- ``crl publish``: ``jpki crl publish --shard 132217 --json`` (full and delta CRLs of one shard
  per CA: 4 HSM signatures on an empty shard, so that the process is mostly start-up).
- ``python -c pass``: the interpreter alone, the floor under both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARD = "132217"  # 清瀬市


@dataclass
class Sample:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    modules: int = 0
    import_s: float = 0.0


def _env(tree: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONPYCACHEPREFIX")}
    env["PYTHONPATH"] = str(tree)
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def _measure(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): "
                         f"{err.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def _importtime(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float]:
    """Modules imported and the sum of the top-level imports' cumulative times (seconds)."""
    proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd,
                          capture_output=True, text=True, check=False)
    modules, total_us = 0, 0
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        modules += 1
        if not name.startswith("  "):  # a top-level import: its cumulative time counts once
            total_us += int(cumulative)
    return modules, total_us / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="NAME=DIR, a source tree to measure (repeatable; default after=.)")
    parser.add_argument("--data-dir", type=Path, help="An initialised data directory.")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    parser.add_argument("--save", type=Path, help="Also write the JSON document here.")
    args = parser.parse_args()

    trees: dict[str, Path] = {}
    for spec in args.tree or [f"after={REPO}"]:
        name, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"--tree {spec}: NAME=DIR")
        trees[name] = Path(path).resolve()
    python = sys.executable
    scratch = Path(tempfile.mkdtemp(prefix="jpki-cli-startup-"))
    caches = {name: scratch / f"pycache-{name}" for name in trees}
    envs = {name: _env(tree, caches[name]) for name, tree in trees.items()}

    data_dir = args.data_dir
    if data_dir is None:
        data_dir = scratch / "data"
        last = list(trees)[-1]
        init = subprocess.run([python, "-m", "api.cli", "init", "--data-dir", str(data_dir),
                               "--json"], env=envs[last], cwd=scratch, capture_output=True,
                              text=True, check=False)
        if init.returncode != 0:
            raise SystemExit(f"jpki init failed: {init.stderr[-2000:]}")
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "jpki --help": [python, "-m", "api.cli", "--help"],
        "jpki crl publish": [python, "-m", "api.cli", "crl", "publish", "--shard", SHARD,
                             "--data-dir", str(data_dir), "--json"],
    }
    samples = {(c, t): Sample() for c in commands for t in trees}
    for tree in trees:  # warm-up: write the bytecode cache, fail early
        for argv in commands.values():
            _measure(argv, envs[tree], scratch)
    for command, argv in commands.items():
        for tree in trees:
            sample = samples[command, tree]
            sample.modules, sample.import_s = _importtime(argv, envs[tree], scratch)
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeat):
        for command, argv in commands.items():
            for tree in trees:
                wall, cpu, rss = _measure(argv, envs[tree], scratch)
                sample = samples[command, tree]
                sample.wall.append(wall)
                sample.cpu.append(cpu)
                sample.rss_kib.append(rss)
        loads.append(os.getloadavg()[0])

    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "load_average_1min": {"min": min(loads), "max": max(loads)},
        "repeat": args.repeat, "trees": {k: str(v) for k, v in trees.items()},
        "results": [
            {"command": command, "tree": tree,
             "wall_median_s": round(statistics.median(s.wall), 3),
             "wall_min_s": round(min(s.wall), 3),
             "cpu_median_s": round(statistics.median(s.cpu), 3),
             "cpu_min_s": round(min(s.cpu), 3),
             "peak_rss_mib": round(statistics.median(s.rss_kib) / 1024, 1),
             "modules_imported": s.modules, "imports_s_importtime": round(s.import_s, 3)}
            for (command, tree), s in samples.items()],
    }
    document = json.dumps(result, indent=2)
    if args.save:
        args.save.write_text(document + "\n", encoding="utf-8")
    if args.json:
        print(document)
        return
    print(f"{result['started']}, Python {result['python']}, {result['cpus']} CPUs, load "
          f"{result['load_average_1min']['min']:.2f}-{result['load_average_1min']['max']:.2f}, "
          f"{args.repeat} rounds")
    print(f"{'command':<18} {'tree':<8} {'wall med':>8} {'wall min':>8} {'cpu med':>8} "
          f"{'cpu min':>8} {'RSS MiB':>8} {'modules':>8} {'imports':>8}")
    for r in result["results"]:
        print(f"{r['command']:<18} {r['tree']:<8} {r['wall_median_s']:>8.3f} "
              f"{r['wall_min_s']:>8.3f} {r['cpu_median_s']:>8.3f} {r['cpu_min_s']:>8.3f} "
              f"{r['peak_rss_mib']:>8.1f} {r['modules_imported']:>8} "
              f"{r['imports_s_importtime']:>8.3f}")


if __name__ == "__main__":
    main()
