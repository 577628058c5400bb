"""Cold start as a new user meets it: a fresh process imports the library and calls
``GaussianHMM(...).log_likelihood(x)`` once, then again.

Run: python benchmarks/bench_cold_start.py   (numba's kernels cached on disk: "warm")
     NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_cold_start.py   (first run ever: "cold")
"""

import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402

t1 = time.perf_counter()
import pytorch_hmm as ph  # noqa: E402

t2 = time.perf_counter()
model = ph.GaussianHMM(num_states=5, feature_dim=13)
x = torch.randn(4, 200, 13)
model.log_likelihood(x)
t3 = time.perf_counter()
model.log_likelihood(x)
t4 = time.perf_counter()
print(
    f"import torch {t1 - t0:.2f} s, import pytorch_hmm {t2 - t1:.2f} s, first log_likelihood "
    f"{t3 - t2:.2f} s, second {1e3 * (t4 - t3):.1f} ms; torch._dynamo imported: "
    f"{'torch._dynamo' in sys.modules}"
)
