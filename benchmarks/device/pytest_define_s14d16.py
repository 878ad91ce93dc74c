"""pytest with gated_delta_forms.cu's build switches set otherwise (timing builds tested as the library would run them):
``#define NAME v`` lines of the source replaced before any kernel is compiled (CuPy's cache keys by the source).

    python benchmarks/device/pytest_define_s14d16.py GF_H16=0 [GF_LDM=0 ...] -- [pytest arguments]
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from lsattn.backends.cupy import _compile  # noqa: E402

split = sys.argv.index("--")
defines = dict(a.split("=", 1) for a in sys.argv[1:split])
source = _compile._source


def patched(name):
    text = source(name)
    if name in ("gated_delta_forms.cu", "gated_delta_forms_tc.cu"):  # (gd_forms' switches: either file)
        for k, v in defines.items():
            old = next((line for line in text.splitlines() if line.startswith(f"#define {k} ")), None)
            text = text if old is None else text.replace(old, f"#define {k} {v}")
    return text


_compile._source = patched
print("gated_delta_forms.cu with", defines, flush=True)
sys.exit(pytest.main(sys.argv[split + 1:]))
