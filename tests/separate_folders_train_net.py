"""One torchrun worker for the tests: tools/train_net.py, run in a folder of its process's own,
ROOT/process<r> (r its LOCAL_RANK), as on machines that share no storage: relative paths in its
arguments name files that one machine may have and another lack.
Args: ROOT, then train_net.py's arguments."""
import os
import runpy
import sys
from pathlib import Path

TRAIN_NET = Path(__file__).resolve().parents[1] / "tools" / "train_net.py"

os.chdir(Path(sys.argv[1], f"process{os.environ['LOCAL_RANK']}"))
sys.argv = [str(TRAIN_NET), *sys.argv[2:]]
runpy.run_path(str(TRAIN_NET), run_name="__main__")
