"""``breastmri models list|add PATH|verify NAME``: see and manage model packages."""

from __future__ import annotations

import argparse

from ..types import DEMO_LABEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="shipped and user packages")
    ls.add_argument("--all", action="store_true", help="also list packages whose card is broken")
    add = sub.add_parser("add", help="verify a package folder or .zip and copy it into the user folder")
    add.add_argument("path")
    add.add_argument(
        "--force", action="store_true", help="replace an installed package of the same name/version"
    )
    ver = sub.add_parser("verify", help="check a package's sha256 and build its network once")
    ver.add_argument("name", help="a registry name (NAME[@VERSION]) or a path")


def run(args: argparse.Namespace) -> int:
    from . import registry

    if args.action == "list":
        infos = registry.available(include_broken=args.all)
        if not infos:
            print(f"no model packages (user folder: {registry.user_dir()})")
            return 0
        for i in infos:
            demo = f"  [{DEMO_LABEL}]" if i.demo else ""
            line = f"{i.label:<32} {i.task:<10} {i.target:<12} {i.origin:<8} {i.path}{demo}"
            print(line if not i.error else f"{i.path.name:<32} BROKEN: {i.error}")
        return 0
    if args.action == "add":
        pkg = registry.add(args.path, force=args.force)
        print(f"added {pkg.label} -> {pkg.source}")
        return 0
    pkg = registry.verify(args.name)
    print(f"{pkg.label}: sha256 {pkg.card.weights.sha256} ok; network builds ({pkg.card.network.factory})")
    return 0
