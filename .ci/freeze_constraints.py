"""Write constraints.txt: the exact versions, in this environment, of market_assets' dependency closure.

Why not a bare `pip freeze`: a shared or long-lived environment holds packages the project never
asked for (tools, experiments); pinning them would be noise at best. This walks the installed
metadata from the requirements in pyproject.toml (the project's, with the extras given: read from
the file, so an install of another checkout cannot hide a new dependency) through every
requirement whose marker holds, and writes `name==version` for each distribution found.

    .venv/bin/python .ci/freeze_constraints.py            # extras: dev
    .venv/bin/python .ci/freeze_constraints.py dev bench  # pin the benchmark anchors too
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "market_assets"
HEADER = """\
# Exact versions of market_assets' dependency closure (extras: {extras}), for reproducible installs:
#   pip install -c constraints.txt -e '.[dev]'      (README quick start, .ci/run)
#   pip wheel -c constraints.txt .                  (Dockerfile)
# Refresh after changing dependencies in pyproject.toml: upgrade the environment, run the tests,
# then `.venv/bin/python .ci/freeze_constraints.py` and commit the result.
"""


def closure(project: dict, extras: set[str]) -> dict[str, str]:
    pinned: dict[str, str] = {}
    roots = list(project["dependencies"])
    for extra in extras:
        roots += [r for r in project["optional-dependencies"].get(extra, []) if not r.startswith(ROOT)]
    todo: list[tuple[str, set[str]]] = []
    for raw in roots:
        req = Requirement(raw)
        todo.append((req.name, set(req.extras)))
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        key = (canonicalize_name(name), frozenset(wanted))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # an optional requirement of some package that is not installed here
        pinned[dist.metadata["Name"]] = dist.version
        for raw in dist.requires or []:
            req = Requirement(raw)
            environments = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in environments):
                todo.append((req.name, set(req.extras)))
    return pinned


def main(argv: list[str]) -> int:
    extras = set(argv) or {"dev"}
    repo = Path(__file__).resolve().parent.parent
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    pins = closure(project, extras)
    pins = {n: v for n, v in pins.items() if canonicalize_name(n) != canonicalize_name(ROOT)}
    lines = [f"{name}=={version}" for name, version in sorted(pins.items(), key=lambda kv: kv[0].lower())]
    target = repo / "constraints.txt"
    target.write_text(HEADER.format(extras=", ".join(sorted(extras))) + "\n".join(lines) + "\n")
    print(f"{target}: {len(lines)} pins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
