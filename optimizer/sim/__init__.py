"""The simulator: the event loop (engine), the launcher, and the policies it runs by name.

Importing any module of this package registers every policy (optimizer/sim/policy.py's
registry), so a caller of `simulate` finds them all while the engine imports none of them.
"""

from optimizer.sim import baselines, buffered, ragged

__all__ = ["baselines", "buffered", "ragged"]
