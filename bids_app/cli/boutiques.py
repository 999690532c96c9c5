"""Boutiques descriptor generated from the argparse parser (``--bids-exec-spec``)."""

from __future__ import annotations

import argparse
from typing import Any

from bids_app import __version__
from bids_app.cli.parser import positive_int, probability

_SKIP = {"help", "version", "bids_exec_spec"}


def boutiques_descriptor(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Describe every option of ``parser`` as a Boutiques 0.5 tool descriptor."""
    inputs = []
    template = ["alsmri"]
    for action in parser._actions:  # argparse exposes no public iterator
        if action.dest in _SKIP:
            continue
        key = f"[{action.dest.upper()}]"
        template.append(key)
        item: dict[str, Any] = {
            "id": action.dest,
            "name": action.dest.replace("_", " "),
            "value-key": key,
            "optional": bool(action.option_strings) and not action.required,
            "description": (action.help or "").replace("%(default)s", str(action.default)),
        }
        if action.option_strings:
            item["command-line-flag"] = max(action.option_strings, key=len)
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                               argparse._CountAction,
                               argparse.BooleanOptionalAction)):
            item["type"] = "Flag"
            if isinstance(action, argparse.BooleanOptionalAction):
                item["command-line-flag"] = action.option_strings[0]
        elif action.type in (int, positive_int):
            item["type"] = "Number"
            item["integer"] = True
        elif action.type in (float, probability):
            item["type"] = "Number"
        elif action.dest in ("bids_dir", "output_dir"):
            item["type"] = "File"
        else:
            item["type"] = "String"
        if action.choices:
            item["value-choices"] = list(action.choices)
        if action.nargs in ("+", "*"):
            item["list"] = True
        if action.dest == "analysis_level":
            item["value-choices"] = ["participant", "group"]
        inputs.append(item)
    return {
        "name": "alsmri",
        "tool-version": __version__,
        "schema-version": "0.5",
        "description": parser.description,
        "command-line": " ".join(template),
        "container-image": {"type": "docker", "image": f"alsmri/alsmri:{__version__}"},
        "inputs": inputs,
        "output-files": [{"id": "derivatives", "name": "derivatives", "path-template":
                          "[OUTPUT_DIR]", "optional": False}],
        "suggested-resources": {"cpu-cores": 2, "ram": 8, "walltime-estimate": 1800},
    }
