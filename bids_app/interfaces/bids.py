"""DerivativesDataSink: write one output under its BIDS-derivatives name, with a sidecar."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_app.bids.derivatives import (
    ENTITY_ORDER,
    bids_uri,
    build_path,
    find_bids_root,
    json_text,
    split_extension,
    write_atomic_together,
)

_SIDECAR_EXTENSIONS = (".nii.gz", ".nii", ".tsv", ".trk")
_OPTIONAL_ENTITIES = [long for long, _ in ENTITY_ORDER if long not in ("subject", "session")]


class _DerivativesDataSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Str(mandatory=True, desc="derivatives root (output_dir)")
    source_file = traits.Either(
        traits.Str, traits.List(traits.Str), mandatory=True,
        desc="BIDS input file(s); subject/session come from the first")
    in_file = File(exists=True, mandatory=True, desc="file to store")
    datatype = traits.Enum("anat", "dwi", "figures", mandatory=True)
    suffix = traits.Str(mandatory=True)
    extension = traits.Str(desc="output extension (default: that of in_file)")
    meta_dict = traits.Dict(traits.Str, traits.Any, desc="extra sidecar fields")
    subject = traits.Str(desc="override the subject taken from source_file")
    session = traits.Str(desc="override the session taken from source_file")


for _entity in _OPTIONAL_ENTITIES:
    _DerivativesDataSinkInputSpec.add_class_trait(_entity, traits.Str())


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    out_meta = File(desc="JSON sidecar, when one is written")


def parse_entities(path: str) -> dict[str, str]:
    """Subject and session of a BIDS file name (``sub-01_ses-a_T1w.nii.gz``)."""
    ent: dict[str, str] = {}
    for part in Path(path).name.split("_"):
        key, _, value = part.partition("-")
        if key == "sub" and value:
            ent["subject"] = value
        elif key == "ses" and value:
            ent["session"] = value.split(".")[0]
    return ent


class DerivativesDataSink(SimpleInterface):
    """Copy ``in_file`` to its derivative name (atomic) and write the JSON sidecar.

    The sidecar holds ``Sources`` (``bids:raw:`` URIs of ``source_file``) plus ``meta_dict``.
    """

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec

    def _run_interface(self, runtime):
        sources = self.inputs.source_file
        sources = [sources] if isinstance(sources, str) else list(sources)
        entities = parse_entities(sources[0])
        for key in ("subject", "session", *_OPTIONAL_ENTITIES):
            value = getattr(self.inputs, key)
            if isdefined(value) and value != "":
                entities[key] = value
        ext = (self.inputs.extension if isdefined(self.inputs.extension)
               else split_extension(self.inputs.in_file))
        rel = build_path(entities, datatype=self.inputs.datatype, suffix=self.inputs.suffix,
                         extension=ext)
        dest = Path(self.inputs.base_directory) / rel
        files = [(dest, None, self.inputs.in_file)]
        if ext in _SIDECAR_EXTENSIONS:
            root = find_bids_root(sources[0])
            meta = {"Sources": [bids_uri(s, root) for s in sources]}
            if isdefined(self.inputs.meta_dict):
                meta.update(self.inputs.meta_dict)
            side = dest.with_name(dest.name[: -len(ext)] + ".json")
            files.append((side, json_text(meta), None))
            self._results["out_meta"] = str(side)
        # the file and its sidecar get their final names together (never one without the other)
        write_atomic_together(files)
        self._results["out_file"] = str(dest)
        return runtime
