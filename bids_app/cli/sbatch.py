"""Text of the Slurm batch scripts written by ``alsmri slurm`` (pure functions, no Slurm calls).

One job array runs the participant level, one task per batch of participants, each task
with its own nipype work directory on node-local scratch; one dependent job runs the group
level. Slurm does all the scheduling: the scripts only say what one task does.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: ``--group-after`` choice -> Slurm dependency type of the group job.
GROUP_AFTER = {"all-succeeded": "afterok", "any": "afterany"}

#: Slurm's own default ``MaxArraySize`` (used when ``scontrol`` cannot be asked).
DEFAULT_MAX_ARRAY_SIZE = 1001

#: Where each task's nipype work directory goes (node-local scratch, removed at the end).
TASK_WORK_DIR = ("${SLURM_TMPDIR:-${TMPDIR:-/tmp}}/"
                 "alsmri-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}")


@dataclass(frozen=True)
class Resources:
    """What every job asks Slurm for (``None``: the partition's default)."""

    cpus_per_task: int
    mem_mb: int
    partition: str | None = None
    time: str | None = None

    def args(self) -> list[str]:
        """The ``sbatch`` options asking for these resources."""
        args = [f"--partition={self.partition}"] if self.partition else []
        args += [f"--time={self.time}"] if self.time else []
        return args + [f"--cpus-per-task={self.cpus_per_task}", f"--mem={self.mem_mb}M"]

    def directives(self) -> list[str]:
        """``#SBATCH`` lines for these resources."""
        return [f"#SBATCH {shlex.quote(arg)}" for arg in self.args()]


@dataclass(frozen=True)
class Job:
    """Everything a script needs that is the same for every job of one submission."""

    bids_dir: Path
    output_dir: Path
    log_dir: Path
    """Where the scripts, the Slurm logs and the job record go."""
    command: tuple[str, ...]
    """How a task starts alsmri: ``python -m bids_app`` or the ``--container`` command."""
    options: tuple[str, ...]
    """The user's participant/group options, passed unchanged to every run."""
    database_dir: Path
    resources: Resources
    chdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables set in every job (TemplateFlow home, data directory)."""
    binds: tuple[str, ...] = ()
    """Container bind paths (``src[:dst[:ro]]``); only used with a container command."""


def split_arrays(n_batches: int, max_array_size: int) -> list[range]:
    """Batch indices of each job array: task indices must stay below ``MaxArraySize``.

    >>> split_arrays(5, 2)
    [range(0, 2), range(2, 4), range(4, 5)]
    >>> split_arrays(0, 1001)
    []
    """
    if max_array_size < 1:
        raise ValueError(f"MaxArraySize must be >= 1, got {max_array_size}")
    return [range(start, min(start + max_array_size, n_batches))
            for start in range(0, n_batches, max_array_size)]


def parse_max_array_size(config_text: str) -> int:
    """``MaxArraySize`` from the text of ``scontrol show config`` (Slurm's default if absent).

    >>> parse_max_array_size("MaxArraySize            = 4\\nMaxJobCount = 10000")
    4
    """
    match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", config_text, re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


def _bash_array(name: str, words: Sequence[str]) -> str:
    if not words:
        return f"{name}=()"
    return f"{name}=({' '.join(shlex.quote(w) for w in words)})"


def _environment(job: Job) -> list[str]:
    """``export`` lines: the job's variables, and the same passed into a container."""
    lines = [f"export {key}={shlex.quote(value)}" for key, value in job.env.items()]
    if job.binds:
        binds = shlex.quote(",".join(job.binds))
        lines += ["# Container: the same paths inside as outside (--cleanenv drops the rest)",
                  f"export APPTAINER_BIND={binds} SINGULARITY_BIND={binds}"]
        lines += [f"export {prefix}ENV_{key}={shlex.quote(value)}"
                  for key, value in job.env.items()
                  for prefix in ("APPTAINER", "SINGULARITY")]
    return lines


def _header(job: Job, *, name: str, log: str, comment: Sequence[str],
            extra: Sequence[str] = ()) -> list[str]:
    return [
        "#!/bin/bash",
        *(f"# {line}" for line in comment),
        f"#SBATCH --job-name={name}",
        *(f"#SBATCH {line}" for line in extra),
        *job.resources.directives(),
        f"#SBATCH --chdir={shlex.quote(str(job.chdir))}",
        f"#SBATCH --output={shlex.quote(str(job.log_dir / log))}",
    ]


def array_script(job: Job, batches: Sequence[Sequence[str]], *, first: int,
                 max_running: int, part: tuple[int, int] = (1, 1)) -> str:
    """The sbatch script of one participant job array.

    Parameters
    ----------
    job
        The submission's common settings.
    batches
        Participant labels (without ``sub-``) of each task of this array, in task order.
    first
        Number (from 1) of this array's first batch among all batches, for the comments.
    max_running
        Tasks of this array running at once (the ``%`` throttle).
    part
        ``(i, n)``: this is array ``i`` of ``n``.
    """
    last = first + len(batches) - 1
    comment = [
        (f"alsmri participant level: Slurm job array {part[0]} of {part[1]}, "
         f"batches {first}-{last} (written by 'alsmri slurm')."),
        "Task i runs the participants of BATCHES[i] in its own nipype work directory on",
        "node-local scratch, removed when the task ends (also when it is cancelled).",
    ]
    lines = _header(job, name="alsmri-participant", log="participant-%A_%a.log",
                    comment=comment, extra=[f"--array=0-{len(batches) - 1}%{max_running}"])
    run = [*job.command, str(job.bids_dir), str(job.output_dir), "participant"]
    lines += [
        "set -euo pipefail",
        "",
        "BATCHES=(",
        *(f"  {shlex.quote(' '.join(batch))}  # task {i}" for i, batch in enumerate(batches)),
        ")",
        _bash_array("ALSMRI", run),
        _bash_array("OPTIONS", job.options),
        *_environment(job),
        "",
        f'WORK="{TASK_WORK_DIR}"',
        'mkdir -p "$WORK"',
        *([('export APPTAINER_BIND="$APPTAINER_BIND,$WORK" '
           'SINGULARITY_BIND="$SINGULARITY_BIND,$WORK"')] if job.binds else []),
        "# On scancel or time-out Slurm sends SIGTERM, then SIGKILL after KillWait: alsmri gets",
        "# KillWait - 2 s to stop, then its process group is killed and the work dir removed.",
        "# (30 s when scontrol does not answer: under set -e/pipefail its failure would end the",
        "# task before alsmri starts)",
        ("killwait=$(scontrol show config 2>/dev/null | awk '$1 == \"KillWait\" {print $3}' "
         "|| true)"),
        "GRACE=$(( ${killwait:-30} > 3 ? ${killwait:-30} - 2 : 1 ))",
        "child=",
        "stop() {",
        '  if [ -n "$child" ]; then',
        '    kill -TERM -- "-$child" 2>/dev/null || true',
        '    for _ in $(seq "$GRACE"); do kill -0 "$child" 2>/dev/null || break; sleep 1; done',
        '    kill -KILL -- "-$child" 2>/dev/null || true',
        '    wait "$child" 2>/dev/null || true',
        "  fi",
        "  exit 143",
        "}",
        'trap \'rm -rf "$WORK"\' EXIT',
        "trap stop TERM INT",
        'read -r -a LABELS <<< "${BATCHES[$SLURM_ARRAY_TASK_ID]}"',
        'echo "alsmri: task $SLURM_ARRAY_TASK_ID on $(hostname): ${LABELS[*]} (work dir $WORK)"',
        '# setsid: alsmri and its workers form one process group that stop() can signal',
        'setsid "${ALSMRI[@]}" --participant-label "${LABELS[@]}" -w "$WORK" \\',
        f"  --bids-database-dir {shlex.quote(str(job.database_dir))} \\",
        (f"  --nprocs {job.resources.cpus_per_task} --mem-mb {job.resources.mem_mb} "
         '"${OPTIONS[@]}" &'),
        "child=$!",
        'wait "$child"',
        "",
    ]
    return "\n".join(lines)


def group_script(job: Job, *, selection: Sequence[str] = (), incomplete: Path) -> str:
    """The sbatch script of the group-level job.

    It first writes ``incomplete`` (participants whose declared outputs are missing, one
    per line, with what is missing) and prints it, rewrites ``logs/CITATION.md`` for every
    selected participant (``--boilerplate-only``; each task wrote its own batch's), then runs
    the group level on whatever participant outputs exist.

    Parameters
    ----------
    job
        The submission's common settings.
    selection
        The ``--participant-label`` values the user gave (empty: everyone).
    incomplete
        Where the list of incomplete participants is written.
    """
    comment = [
        "alsmri group level (written by 'alsmri slurm'); submitted with a dependency on",
        "the participant job array(s): see submit.sh in this directory.",
    ]
    lines = _header(job, name="alsmri-group", log="group-%j.log", comment=comment)
    check = ["slurm", str(job.bids_dir), str(job.output_dir),
             "--list-incomplete", str(incomplete)]
    boilerplate = [str(job.bids_dir), str(job.output_dir), "participant", "--boilerplate-only",
                   "--bids-database-dir", str(job.database_dir)]
    if selection:
        check += ["--participant-label", *selection]
        boilerplate += ["--participant-label", *selection]
    lines += [
        "set -euo pipefail",
        "",
        _bash_array("ALSMRI", job.command),
        _bash_array("OPTIONS", job.options),
        *_environment(job),
        "",
        "# Participants whose declared outputs are missing (empty when all succeeded)",
        '"${ALSMRI[@]}" ' + shlex.join(check) + ' "${OPTIONS[@]}"',
        "# The methods text of the whole study (each task wrote its own batch's CITATION.md)",
        'WORK="${TMPDIR:-/tmp}/alsmri-group-${SLURM_JOB_ID}"',
        'trap \'rm -rf "$WORK"\' EXIT',
        '"${ALSMRI[@]}" ' + shlex.join(boilerplate) + ' -w "$WORK" "${OPTIONS[@]}"',
        (f'"${{ALSMRI[@]}}" {shlex.quote(str(job.bids_dir))} '
         f'{shlex.quote(str(job.output_dir))} group "${{OPTIONS[@]}}"'),
        "",
    ]
    return "\n".join(lines)


def submit_script(arrays: Sequence[str], group: str, *, dependency: str) -> str:
    """``submit.sh``: the ``sbatch`` calls of one submission, runnable by hand.

    Arrays after the first wait for the one before (``afterany``), so the ``%`` throttle
    bounds the running tasks overall; the group job waits for every array.
    """
    lines = ["#!/bin/bash",
             "# The sbatch calls 'alsmri slurm' made (or would make, with --dry-run).",
             "set -euo pipefail", 'cd "$(dirname "$0")"']
    ids = []
    for i, script in enumerate(arrays):
        after = f" --dependency=afterany:${ids[-1]}" if ids else ""
        lines.append(f"A{i + 1}=$(sbatch --parsable{after} {shlex.quote(script)} | cut -d';' -f1)")
        ids.append(f"A{i + 1}")
    group_dep = ""
    if ids:
        group_dep = f" --dependency={dependency}:" + ":".join(f"${i}" for i in ids)
        if dependency == "afterok":
            group_dep += " --kill-on-invalid-dep=yes"
    lines.append(f"G=$(sbatch --parsable{group_dep} {shlex.quote(group)} | cut -d';' -f1)")
    lines.append('echo "participant arrays: ' + " ".join(f"${i}" for i in ids)
                 + '; group job: $G"')
    return "\n".join(lines) + "\n"
