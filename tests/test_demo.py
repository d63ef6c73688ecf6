"""``python -m skinvert demo``: the comparison, the figure, the command line."""

import os
import subprocess
import sys

import numpy as np
import pytest

from skinvert import make_random_generator
from skinvert._demo import DEFAULT_OUT, MISSING_COLOUR, main, run_demo

pytest.importorskip("matplotlib")


def test_run_demo_every_inverter_and_figure(tmp_path):
    G = make_random_generator([5, 30, 64], random_state=0)
    out = tmp_path / "sub" / "demo.png"
    lines = []
    res = run_demo(G, n_signals=3, masks=("clean", "random45"), gd_iter=20, out=str(out),
                   stream=lines.append)
    methods = {m for _, m in res}
    assert methods == {"Oracle", "Latent-Pursuit", "Layered BP", "Hybrid", "Gradient descent"}
    assert out.exists() and out.stat().st_size > 10_000
    assert any(str(out) in line for line in lines)  # the path is printed
    # The exact inverters are exact here.
    assert np.median(res[("clean", "Latent-Pursuit")]["snr"]["z"]) > 100


def test_figure_content(tmp_path):
    """Title, a header per column, a per-panel SNR, missing pixels in magenta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skinvert import _demo

    G = make_random_generator([5, 30, 64], random_state=0)
    seen = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, path, **kw):
        seen["titles"] = [ax.get_title() for ax in fig.axes]
        seen["xlabels"] = [ax.get_xlabel() for ax in fig.axes]
        seen["suptitle"] = fig._suptitle.get_text()
        seen["bad"] = [im.cmap.get_bad() for ax in fig.axes for im in ax.get_images()]
        return real_savefig(fig, path, **kw)

    plt.Figure.savefig = spy
    try:
        run_demo(G, n_signals=2, masks=("clean", "random45"), gd_iter=10,
                 out=str(tmp_path / "f.png"), stream=lambda s: None)
    finally:
        plt.Figure.savefig = real_savefig
    assert "skinvert demo" in seen["suptitle"]
    headers = [t for t in seen["titles"] if t]
    assert headers == ["clean signal", "input to the inverters", "Oracle", "Latent-Pursuit",
                       "Layered BP", "Hybrid", "Gradient descent"]
    assert sum(label == "exact" for label in seen["xlabels"]) >= 8
    assert any(label.endswith("% missing") for label in seen["xlabels"])
    magenta = matplotlib.colors.to_rgba(MISSING_COLOUR)
    assert all(tuple(b) == magenta for b in seen["bad"])
    assert _demo.corrupt(np.zeros((1, 4)), "clean", None).shape == (1, 4)


def test_default_output_is_ignored_by_git():
    assert DEFAULT_OUT.split(os.sep)[0] == "out"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, ".gitignore")) as f:
        assert "/out/" in f.read().split()


def test_every_option_has_help():
    text = subprocess.run(
        [sys.executable, "-m", "skinvert", "demo", "--help"], capture_output=True, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True,
    ).stdout
    for opt in ("--generator", "--n-signals", "--gd-iter", "--masks", "--seed", "--out"):
        block = text.split(opt, 2)[-1].split("--", 1)[0]
        assert len(block.split()) > 3, opt  # a help text follows the option


def test_cli_bad_generator_is_one_line():
    r = subprocess.run(
        [sys.executable, "-m", "skinvert", "demo", "--generator", "nope"],
        capture_output=True, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("python -m skinvert: error: --generator")


def test_main_runs(tmp_path, capsys):
    assert main(["demo", "--generator", "random", "--n-signals", "2", "--gd-iter", "5",
                 "--masks", "clean", "--out", str(tmp_path / "m.png")]) == 0
    assert "figure written to" in capsys.readouterr().out


def test_convolutional_generator_leaves_out_the_pursuits(tmp_path):
    # A contracting last convolution: the layer-wise pursuits would refuse it, so the
    # demo shows the Oracle, the hybrid and gradient descent, and says why.
    from .test_conv_inversion import small_conv_generator

    G = small_conv_generator("tanh")
    lines = []
    res = run_demo(G, n_signals=2, masks=("clean", "top13"), gd_iter=5,
                   out=str(tmp_path / "c.png"), stream=lines.append)
    assert {m for _, m in res} == {"Oracle", "Hybrid", "Gradient descent"}
    assert any("Latent-Pursuit and Layered BP do not apply" in line and "512 units" in line
               for line in lines)
    for mask in ("clean", "top13"):
        assert np.all(res[(mask, "Hybrid")]["snr"]["z"] > 60)
        assert np.all(res[(mask, "Oracle")]["snr"]["z"] > 60)


def test_main_runs_on_the_shipped_dcgan(tmp_path, capsys):
    assert main(["demo", "--generator", "fashion-mnist-dcgan", "--n-signals", "1",
                 "--gd-iter", "5", "--masks", "clean", "--out", str(tmp_path / "d.png")]) == 0
    out = capsys.readouterr().out
    assert "do not apply" in out and "Hybrid" in out and (tmp_path / "d.png").exists()
