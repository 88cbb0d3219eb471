import sys
from pathlib import Path

# schedtest.py (builders shared by these tests) lives beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
