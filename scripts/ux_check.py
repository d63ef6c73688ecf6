"""Repeat issue 18's items 1-8 (and issue 17 rows 7-11) and print what a user now sees.

Run from the repository root: ``python scripts/ux_check.py`` (about a minute).
Each item has a test in tests/test_user_experience.py or tests/test_demo.py.
"""

import os
import subprocess
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sklearn.model_selection import GridSearchCV  # noqa: E402

from skinvert import (  # noqa: E402
    GeneratorImputer,
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
    make_random_generator,
)
from skinvert.metrics import heldout_pixel_scorer  # noqa: E402


def show(title, fn):
    print(f"\n== {title}")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        try:
            out = fn()
            if out is not None:
                print("   ->", out)
        except Exception as exc:  # noqa: BLE001 - shown to the reader
            print(f"   {type(exc).__name__}: {exc}")
    for w in rec:
        where = f"{os.path.basename(w.filename)}:{w.lineno}"
        print(f"   {w.category.__name__} at {where}: {w.message}")


G = make_random_generator([20, 80, 200, 400], random_state=0)
rng = np.random.default_rng(0)
X = G.forward(rng.standard_normal((8, 20)))

# 1. generator required; names and torch modules accepted
show("1. LatentPursuitInverter() without a generator", lambda: LatentPursuitInverter())
show("1. LatentPursuitInverter(None).fit(X)", lambda: LatentPursuitInverter(None).fit(X))
show("1. GeneratorImputer(None).fit(X)", lambda: GeneratorImputer(None).fit(X))
show("1. LatentPursuitInverter('digits-fc').fit(...)",
     lambda: LatentPursuitInverter("digits-fc").fit(np.zeros((1, 64)) + 0.1).generator_)

# 2. saturated and out-of-range data
gs = make_random_generator([5, 40, 100], output_activation="sigmoid", random_state=0)
B = (rng.random((4, 100)) > 0.5).astype(float)
show("2. 0/1 images into a sigmoid generator (Latent-Pursuit)",
     lambda: LatentPursuitInverter(gs).fit(gs.forward(rng.standard_normal((2, 5)))).transform(B))
gt = make_random_generator([5, 40, 100], output_activation="tanh", random_state=0)
Xt = gt.forward(rng.standard_normal((4, 5)))
Xs = Xt.copy()
Xs[:, :95] = 1.0
show("2. 95 % saturated rows (Layered BP)",
     lambda: LayeredBPInverter(gt).fit(Xt).transform(Xs).shape)
X255 = rng.integers(0, 256, (4, 100)).astype(float)
show("2. unscaled 0..255 images, tanh output (Layered BP)",
     lambda: LayeredBPInverter(gt).fit(Xt).transform(np.where(X255 > 0, X255, 0.5)).shape)
Xn = X + 5.0 * rng.standard_normal(X.shape)
show("2. 5x noise on a tanh output, float32 (issue 17 row 7): max |z|",
     lambda: float(np.abs(OracleInverter(G).fit(X.astype(np.float32))
                          .transform(Xn.astype(np.float32))).max()))

# 3. held-out scorer with a measurement
gi = make_random_generator([5, 30, 60], output_activation="identity", random_state=0)
A = rng.standard_normal((40, 60))
Y = gi.forward(rng.standard_normal((24, 5))) @ A.T
show("3. GridSearchCV(GradientDescentInverter(G, measurement=A), heldout_pixel_scorer)",
     lambda: GridSearchCV(GradientDescentInverter(gi, measurement=A, random_state=0),
                          {"gamma": [0.0, 1e-2]}, scoring=heldout_pixel_scorer(0.1),
                          cv=3).fit(Y).best_params_)

# 4. progress
show("4. GradientDescentInverter(G, verbose=1) on 200 rows (bar on stderr)",
     lambda: GradientDescentInverter(G, verbose=1, transform_max_iter=100, random_state=0)
     .fit(X).transform(G.forward(rng.standard_normal((200, 20)))).shape)

# 5. warnings: at the caller's line, naming the parameter, not on recovered rows
show("5. GradientDescentInverter(G, transform_max_iter=5).fit_transform(X)",
     lambda: GradientDescentInverter(G, transform_max_iter=5, random_state=0)
     .fit_transform(X).shape)
g48 = make_random_generator([4, 8, 30], random_state=1)
X48 = g48.forward(np.random.default_rng(1).standard_normal((40, 4)))
show("5. GradientDescentInverter on a small net: stalled rows told from descending ones",
     lambda: GradientDescentInverter(g48, transform_max_iter=400, random_state=0)
     .fit(X48).transform(X48).shape)
PLU = ("plu", {"slope": 0.1, "c": 1.0})
gp = make_random_generator([10, 60, 150, 200], output_activation=PLU, random_state=0)
r = np.random.default_rng(0)
r.standard_normal((180, 200)), r.standard_normal((16, 10))
Ap = r.standard_normal((120, 200)) / np.sqrt(120)
Zp = r.standard_normal((16, 10))
show("5. Latent-Pursuit through A, PLU output, refine_max_iter=2 (all rows exact): max error",
     lambda: float(np.abs(LatentPursuitInverter(gp, measurement=Ap, refine_max_iter=2)
                          .fit(gp.forward(Zp) @ Ap.T).transform(gp.forward(Zp) @ Ap.T)
                          - Zp).max()))
Xnoisy = gi.forward(rng.standard_normal((6, 5))) + 0.5 * rng.standard_normal((6, 60))
show("5. OracleInverter without supports (support estimator stops early)",
     lambda: OracleInverter(gi, support_estimator=GradientDescentInverter(
         gi, transform_max_iter=2, random_state=0)).fit(Xnoisy).transform(Xnoisy).shape)

# 6. per-row diagnostics
def info():
    _, inf = LatentPursuitInverter(G).fit(X).transform(X, return_info=True)
    return {k: (v[:3] if hasattr(v, "shape") else v) for k, v in inf.items()}


show("6. transform(X, return_info=True) (first 3 rows)", info)

# 7. from_torch and the CLI
def leaky():
    import torch

    from skinvert.io import from_torch

    return from_torch(torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.LeakyReLU(),
                                          torch.nn.Linear(8, 10), torch.nn.Tanh()))


show("7. from_torch with a LeakyReLU hidden layer", leaky)
show("7. python -m skinvert demo --generator nope", lambda: subprocess.run(
    [sys.executable, "-m", "skinvert", "demo", "--generator", "nope"],
    capture_output=True, text=True).stderr.strip().splitlines()[-1])

# 8. the demo figure (see out/skinvert_demo.png)
show("8. python -m skinvert demo --n-signals 4 --gd-iter 200", lambda: subprocess.run(
    [sys.executable, "-m", "skinvert", "demo", "--n-signals", "4", "--gd-iter", "200"],
    capture_output=True, text=True).stdout.strip().splitlines()[-2])
