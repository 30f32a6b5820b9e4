import subprocess
import sys


def test_import_is_light():
    """`import qtoolkit` and building the CLI import neither torch nor onnxruntime nor tensorrt."""
    code = (
        "import sys, qtoolkit, qtoolkit.cli, qtoolkit.recipe; "
        "heavy = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'transformers') "
        "if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
