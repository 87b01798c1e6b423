"""The least W2 can take with one container per step on this machine, whatever runs it.

    python bench/docker_floor.py [--reps 3] [--fan 8] [--sleep 2]

Starts `--fan` containers of mlpipe's runtime image at once through the Docker API, each doing
only what any step's container must: start, import ipykernel (what a kernel imports before it
can run a cell), sleep, exit, be removed. No runner, no kernel start-up beyond the import, no
notebook, so the wall time is a floor for W2 docker, for mlpipe or any tool that gives each
step its own container and kernel. Measured with the default (bridge) network and with
`--network none`, repetitions interleaved; prints medians and the machine's busy CPU seconds
(from /proc/stat: includes the daemons, runc and the kernel's work for the containers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from w2 import busy_cpu

CODE = ("import sys\nsys.modules['debugpy'] = None  # as a step kernel starts\n"
        "import ipykernel.kernelapp, time\ntime.sleep({sleep})\n")


def once(client, image: str, network: str, fan: int, sleep: float) -> tuple[float, float]:
    ends: list[float] = []
    errors: list[BaseException] = []
    started, busy = time.monotonic(), busy_cpu()

    def step() -> None:
        try:
            container = client.containers.create(
                image, ["python", "-c", CODE.format(sleep=sleep)], network_mode=network,
                init=True, detach=True)
            try:
                container.start()
                container.wait()
                ends.append(time.monotonic() - started)
            finally:
                container.remove(force=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=step) for _ in range(fan)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.monotonic() - started, busy_cpu() - busy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--fan", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=2.0)
    args = parser.parse_args(argv)

    from mlpipe_jupyter.executors.daemon import connect
    from mlpipe_jupyter.executors.images import ensure_runtime_image, resolve_base
    from mlpipe_jupyter.ui.config import load_config

    client = connect()
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    base = resolve_base(client, load_config(".").base_image, log=log)
    image = ensure_runtime_image(client, base=base, requirements="", log=log)
    results: dict[str, list[tuple[float, float]]] = {"bridge": [], "none": []}
    once(client, image, "bridge", 1, 0)  # warm-up, untimed
    for rep in range(args.reps):
        for network, runs in results.items():
            runs.append(once(client, image, network, args.fan, args.sleep))
            wall, cpu = runs[-1]
            print(f"rep {rep + 1} network {network}: wall {wall:.2f} s, machine busy "
                  f"{cpu:.2f} cpu-s", flush=True)
    for network, runs in results.items():
        print(f"{args.fan} containers importing ipykernel and sleeping {args.sleep:g} s, network "
              f"{network}: wall median {statistics.median(w for w, _ in runs):.2f} s, machine "
              f"busy median {statistics.median(c for _, c in runs):.2f} cpu-s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
