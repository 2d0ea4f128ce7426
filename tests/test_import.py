"""`import zoo` stays light: no torch, no numpy, no transformers."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_zoo_pulls_no_heavy_modules():
    code = (
        "import sys, json, zoo; zoo.list_models(); zoo.card('all-minilm-l6-v2');"
        "heavy = ('torch', 'numpy', 'transformers', 'huggingface_hub');"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_public_api_names_resolve():
    import zoo

    for name in zoo.__all__:
        assert getattr(zoo, name) is not None, name
    assert callable(zoo.load) and callable(zoo.similarity)
