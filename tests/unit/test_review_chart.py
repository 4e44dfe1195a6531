"""`orchestrate review CAPTURE --svg FILE`: the boot chart, checked as a person sees it.

Chromium (Debian's package, headless, a fresh profile, no network features) renders
the SVG to a PNG; the test reads the pixels where the chart's own layout puts each bar
and checks their colour, so a bar drawn in the wrong place, the wrong size or the wrong
colour fails. The XML is checked too: self-contained (no script, nothing fetched).
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.review import review_path
from orchestrator.review_model import CaptureReview, critical_path
from orchestrator.review_svg import BAR, COLOURS, Layout, chart
from tests.conftest import REPO, run_orchestrate

CAPTURES = REPO / "tests" / "fixtures" / "captures"
SVG = "{http://www.w3.org/2000/svg}"
CHROMIUM = "/usr/bin/chromium"


def rendered(review: CaptureReview, tmp_path: Path) -> tuple[Image.Image, Layout, str]:
    """The chart as Chromium draws it, at one CSS pixel a pixel."""
    text, geo = chart(review)
    svg = tmp_path / "chart.svg"
    svg.write_text(text)
    png = tmp_path / "chart.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--force-device-scale-factor=1", f"--window-size={geo.width},{geo.height}",
         f"--screenshot={png}", svg.as_uri()],
        check=True, capture_output=True, timeout=120)
    image = Image.open(png).convert("RGB")
    assert image.size == (geo.width, geo.height)
    return image, geo, text


def colour(name: str) -> tuple[int, int, int]:
    value = COLOURS[name].lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def assert_colour(image: Image.Image, x: float, y: float, name: str) -> None:
    got = image.getpixel((round(x), round(y)))
    want = colour(name)
    assert isinstance(got, tuple)
    assert all(abs(a - b) <= 8 for a, b in zip(got, want, strict=True)), \
        f"at ({x:.0f}, {y:.0f}): {got}, not {name} {want}"


def review(case: str) -> CaptureReview:
    return review_path(str(CAPTURES / f"{case}.log"))


def test_each_step_and_each_domain_phase_is_drawn_where_its_times_say(tmp_path: Path) -> None:
    result = review("lifecycle")
    image, geo, _ = rendered(result, tmp_path)
    run = result.boot.reviewed if result.boot else None
    assert run is not None
    checked = 0
    for number, step in run.steps.items():
        assert step.began is not None and step.seconds is not None
        if geo.x(step.began + step.seconds) - geo.x(step.began) >= 4:
            assert_colour(image, geo.x(step.began + step.seconds / 2),
                          geo.rows[f"step:{number}"], "step ok")
            checked += 1
    for dom in run.domains.values():
        y = geo.rows[f"domain:{dom.name}"]
        assert dom.start is not None and dom.created and dom.booting and dom.ready
        for phase, begin, end in (("creating", dom.start, dom.created),
                                  ("booting", dom.booting, dom.ready)):
            assert_colour(image, (geo.x(begin) + geo.x(end)) / 2, y, phase)
            checked += 1
        # left of its start and right of its end: no bar (the grid's white or grey)
        assert image.getpixel((round(geo.x(dom.start) - 4), round(y)))[0] > 200
        assert image.getpixel((round(geo.x(dom.ready) + 2), round(y)))[0] > 200
    assert checked >= 10


def test_the_critical_path_is_outlined_and_only_it(tmp_path: Path) -> None:
    result = review("lifecycle")
    image, geo, _ = rendered(result, tmp_path)
    run = result.boot.reviewed if result.boot else None
    assert run is not None
    path = {d.name for d in critical_path(run.domains)}
    assert path == {"net-vm", "workload-vm"}
    for dom in run.domains.values():
        assert dom.start is not None and dom.ready is not None
        top = geo.rows[f"domain:{dom.name}"] - BAR / 2
        x = (geo.x(dom.booting or dom.start) + geo.x(dom.ready)) / 2
        edge = image.getpixel((round(x), round(top)))
        assert isinstance(edge, tuple)
        if dom.name in path:
            assert max(edge) < 60, f"{dom.name}: {edge}"
        else:
            assert_colour(image, x, top + 1, "booting")


def test_failures_are_red_with_their_cause_and_a_partial_step_orange(tmp_path: Path) -> None:
    result = review("net-vm-never")
    image, geo, text = rendered(result, tmp_path)
    run = result.boot.reviewed if result.boot else None
    assert run is not None
    net = run.domains["net-vm"]
    assert net.ended is not None and net.first_seen is not None
    begin = net.start if net.start is not None else net.first_seen
    assert_colour(image, (geo.x(begin) + geo.x(net.ended)) / 2, geo.rows["domain:net-vm"],
                  "failed")
    step = run.steps[7]
    assert step.began is not None and step.seconds is not None
    assert_colour(image, geo.x(step.began + step.seconds / 2), geo.rows["step:7"],
                  "step partial")
    assert ">failed: timed out after 2 s waiting for net-vm xenstore:data/ready</text>" in text
    assert f'fill="{COLOURS["failed"]}" font-size="11" text-anchor="start" ' \
           'font-weight="normal">failed: timed out' in text


def test_after_the_boot_the_restarts_repairs_and_shutdown_are_drawn(tmp_path: Path) -> None:
    result = review("lifecycle")
    image, geo, _ = rendered(result, tmp_path)
    boot = result.boot
    assert boot is not None and len(boot.repairs) == 2
    for repair in boot.repairs:
        assert repair.done is not None
        y = geo.rows[f"after:{repair.domain}"]
        assert_colour(image, (geo.x(repair.at) + 4 + geo.x(repair.done)) / 2, y, "repair")
        assert_colour(image, geo.x(repair.at), y - BAR / 2 - 1, "restart")
    assert boot.shutdown is not None
    for domain, _, at, seconds in boot.shutdown.stopped:
        assert seconds is not None
        assert_colour(image, geo.x(at - seconds / 2), geo.rows[f"after:{domain}"],
                      "stopping")
    # the follower's idle minutes are a break, not 100 s of empty chart
    assert geo.breaks and geo.width < 1600


def test_the_svg_is_self_contained_and_names_what_it_draws() -> None:
    text, geo = chart(review("lifecycle"))
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height")) == (str(geo.width), str(geo.height))
    tags = {el.tag.removeprefix(SVG) for el in root.iter()}
    assert tags <= {"svg", "rect", "line", "text", "title"}, tags
    assert "script" not in text and "href" not in text and "url(" not in text
    assert "@font-face" not in text and "http://" not in text.replace(SVG[1:-1], "")
    classes = [el.get("class") for el in root.iter(f"{SVG}rect")]
    assert classes.count("step ok") == 9
    assert classes.count("phase booting") == 3 and classes.count("phase provisioned") == 3
    assert classes.count("critical") == 2 and classes.count("restart") == 2
    assert classes.count("stopping") == 3 and classes.count("vif attached") >= 2
    texts = [el.text for el in root.iter(f"{SVG}text")]
    assert "critical path: net-vm -> workload-vm = 16.51 s" in texts
    assert "seconds since boot" in texts


@pytest.mark.parametrize("case", ["ok", "killed", "fetch-404", "lab-4.17-ok", "two-boots"])
def test_the_command_writes_a_chart_for_any_capture(case: str, tmp_path: Path) -> None:
    out = tmp_path / f"{case}.svg"
    result = run_orchestrate("review", str(CAPTURES / f"{case}.log"), "--svg", str(out))
    assert result.returncode in (0, 1), result.stderr
    root = ET.fromstring(out.read_text())
    assert root.tag == f"{SVG}svg" and out.read_text().isascii()


def test_an_unwritable_chart_path_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "chart.svg"
    result = run_orchestrate("review", str(CAPTURES / "ok.log"), "--svg", str(target))
    assert result.returncode == 2
    assert result.stderr == (f"orchestrate review: {CAPTURES / 'ok.log'}: cannot write the "
                             f"chart to {target}: No such file or directory\n")
    assert not target.parent.exists()
