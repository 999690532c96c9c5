"""``report.html`` opened in headless Chromium: every image and table loads and shows."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess

import pytest
from synthetic_group import simulate_table, write_cohort

from bids_app.bids.outputs import GROUP_OUTPUTS
from bids_app.group.run import run_group
from bids_app.reports.drawing import drawing
from bids_app.reports.group import write_outputs
from bids_app.settings import ExecutionSettings, GroupSettings, Settings

#: Appended to a copy of the report: after load, record every image's state in the DOM.
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src'),
    complete: i.complete, width: i.naturalWidth, shown: i.getBoundingClientRect().width}));
  const tables = [...document.querySelectorAll('table')].map(t => t.rows.length);
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({imgs, tables}); document.body.appendChild(out);
});</script>"""


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    """A headless Chromium-based browser (Debian's chromium; Google Chrome on CircleCI's
    Ubuntu images); skipped outside CI when absent, a failure in CI."""
    exe = next(filter(None, map(shutil.which, BROWSERS)), None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium not installed in CI (.ci/run installs the Debian package)")
        pytest.skip("chromium not installed (Debian: apt-get install -y chromium); "
                    "CI installs it")
    return exe


def test_report_renders_in_chromium(tmp_path):
    exe = chromium()
    table = simulate_table(20, 14, seed=5)
    write_cohort(table, tmp_path / "bids", tmp_path / "out")
    spec = tmp_path / "spec.yaml"
    spec.write_text("metrics: [fa, md]\nscores: [alsfrs_r, cmap_z_sum]\n"
                    "interhemispheric_metrics: [fa]\n")
    settings = Settings(execution=ExecutionSettings(
        bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", analysis_level="group",
        work_dir=tmp_path / "w"), group=GroupSettings(analysis_spec=spec))
    # figures drawn by two forked workers while the tables are written (as with --nprocs 2)
    written = write_outputs(run_group(settings), tmp_path / "out", processes=2)
    report = written["report"]
    source = report.read_text()
    n_img = len(re.findall(r"<img ", source))
    assert n_img >= 8
    probe = report.with_name("probe.html")
    probe.write_text(source.replace("</body>", PROBE + "</body>"))
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--allow-file-access-from-files", "--virtual-time-budget=10000",
            "--window-size=1280,2400"]
    dom = subprocess.run([*base, "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    found = re.search(r"<pre id=\"probe\">(.*?)</pre>", dom, re.DOTALL)
    assert found, dom[-2000:]
    state = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(state["imgs"]) == n_img
    for img in state["imgs"]:
        assert img["complete"] and img["width"] > 0, img
        png = report.parent / img["src"]
        width = struct.unpack(">II", png.read_bytes()[16:24])[0]
        assert img["width"] == width, img
        # shown at its pixel size (not shrunk to fit the page), so its text stays legible
        assert abs(img["shown"] - width) <= 1, img
    assert len(state["tables"]) >= 8 and all(n >= 2 for n in state["tables"])
    assert "Primary hypotheses" in dom and "Exploratory analyses" in dom
    assert "10<sup>-3</sup> mm<sup>2</sup>/s" in dom
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}",
                    report.as_uri()], capture_output=True, timeout=120, check=True)
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])
    assert (width, height) == (1280, 2400) and shot.stat().st_size > 50_000
    assert GROUP_OUTPUTS["report"] == report.name


def test_figures_drawn_by_workers_are_those_drawn_in_process(tmp_path):
    """The forked workers run the same jobs (and return their paths in order)."""
    def job(name):
        def draw():
            path = tmp_path / name
            path.write_text(f"{name} {len(name)}")
            return path
        return draw

    jobs = {"b": job("b.txt"), "a": job("a.txt"), "none": lambda: None}
    with drawing(jobs, processes=2) as drawn:
        parallel = drawn()
    assert list(parallel) == ["b", "a", "none"] and parallel["none"] is None
    texts = {k: p.read_text() for k, p in parallel.items() if p is not None}
    with drawing(jobs, processes=1) as drawn:
        serial = drawn()
    assert parallel == serial and texts == {k: p.read_text() for k, p in serial.items() if p}
