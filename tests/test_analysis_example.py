"""Smoke test of examples/plot_uniqueness.py on a tiny grid."""

import importlib.util
import pathlib
import warnings

import pytest

import skinvert

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "plot_uniqueness.py"
CLASSES = {"gradient-descent": "GradientDescentInverter",
           "latent-pursuit": "LatentPursuitInverter"}


@pytest.mark.skipif(not EXAMPLE.exists(), reason="example not present")
@pytest.mark.parametrize("inverter", sorted(CLASSES))
def test_plot_uniqueness_writes_figure(tmp_path, inverter):
    pytest.importorskip("matplotlib")
    if not hasattr(skinvert, CLASSES[inverter]):
        pytest.skip(f"skinvert.{CLASSES[inverter]} does not exist yet")
    spec = importlib.util.spec_from_file_location("plot_uniqueness", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "u.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the short run does not converge
        rows = mod.main(["--n0", "4", "--n", "30", "--n1", "6", "24", "--n-signals", "4",
                         "--max-iter", "30", "--inverter", inverter, "--out", str(out)])
    assert out.stat().st_size > 0
    # n_1 = 6: s_1 ~ 3 < n_0 = 4 mostly, so Corollary 1 fails; n_1 = 24 meets it mostly.
    assert rows[0]["cor1"] < rows[1]["cor1"]
