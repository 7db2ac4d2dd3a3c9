import sys
import warnings
from pathlib import Path

from amaranth.hdl import UnusedElaboratable

sys.path.insert(0, str(Path(__file__).parent))
# cores built only to check their parameters (core_for, refusals) are never elaborated
warnings.filterwarnings("ignore", category=UnusedElaboratable)
