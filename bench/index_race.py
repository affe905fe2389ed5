"""index-race: five concurrent `manifesto index add` runs on one tag, repeated; every entry must land.

    .venv/bin/python bench/index_race.py [--repeat N] [--faults]

Each repetition pushes five one-platform images into a fresh repository of a throwaway
registry, starts five `manifesto index add REPO:multi IMAGE@DIGEST` processes that wait on one
file, releases them at once, and checks that the list under the tag names all five. With
--faults the processes talk through tests/support/faultproxy.py, which answers 503 to some
tag reads, tag moves and list puts. The suite runs a few repetitions
(tests/cli/test_index_races.py); this runs as many as asked and prints how many held and the
time each took. Exit 1 if any repetition lost an entry or a process failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(REPO))

from bench.common import sandbox_env  # noqa: E402
from tests.cli.test_index_races import final, five_images, race  # noqa: E402
from tests.support.content import Content  # noqa: E402
from tests.support.faultproxy import FaultProxy, Respond  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--faults", action="store_true", help="through a proxy answering 503 now and then")
    args = parser.parse_args()
    held = 0
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = sandbox_env(home, HOME=str(home), NO_COLOR="1", MANIFESTO_KEYRING="file")
        registry = start_registry(Path(tmp) / "registry")
        try:
            for n in range(args.repeat):
                repo = f"race/{uuid.uuid4().hex[:8]}"
                c = Content(registry, repo)
                images = five_images(c)
                go = Path(tmp) / f"go-{n}"
                started = time.monotonic()
                if args.faults:
                    with FaultProxy(registry.host) as proxy:
                        proxy.add(Respond(503), method="PUT", path=r"/manifests/multi$", skip=1, times=2)
                        proxy.add(Respond(503), method="HEAD", path=r"/manifests/multi$", skip=3, times=3)
                        proxy.add(Respond(503), method="GET", path=r"/manifests/multi$", skip=2, times=2)
                        results = race(proxy.host, proxy.ref(repo, "multi"), [proxy.ref(repo, i.digest) for i in images], env, go)
                else:
                    results = race(registry.host, registry.ref(repo, "multi"),
                                   [f"{registry.host}/{repo}@{i.digest}" for i in images], env, go)  # fmt: skip
                seconds = time.monotonic() - started
                failed = [err for rc, err in results if rc != 0]
                ok = not failed and sorted(final(c, "multi")) == sorted(i.digest for i in images)
                held += ok
                print(f"run {n + 1}: {'held' if ok else 'LOST'} in {seconds:.1f} s", file=sys.stderr)
                for err in failed:
                    print(err, file=sys.stderr)
                c.close()
        finally:
            registry.stop()
    print(f"index-race{' (faults)' if args.faults else ''}: {held} of {args.repeat} runs kept all five entries")
    return 0 if held == args.repeat else 1


if __name__ == "__main__":
    sys.exit(main())
