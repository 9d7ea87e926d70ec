"""Architecture contracts: import layers and no cycles (import-linter), sites as the only site-kind branching."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "softprompt"


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    out = subprocess.run([exe, str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_no_code_outside_sites_branches_on_a_site_kind():
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "sites":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"isinstance\(.*Site|site\.kind\s*==|\.site\.kind\s*in", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_no_module_imports_site_classes_by_kind_outside_sites():
    pattern = re.compile(r"from softprompt\.sites(\.\w+)? import .*\b(KVSite|LayerSite|EmbeddingSite)\b")
    hits = [str(p.relative_to(ROOT)) for p in SRC.rglob("*.py") if p.parent.name != "sites" and pattern.search(p.read_text())]
    assert not hits, hits
