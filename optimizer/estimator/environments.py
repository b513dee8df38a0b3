"""Lambda's side of the estimate: cold starts and waits for a free environment, per buffer.

Helper of optimizer/estimator/estimate.py. Inputs are the buffer's expected batch openings per
arrival
of the trace (r_j = p * q_j, from optimizer/estimator/batching.py), so bursts in the real trace
show up as local load without replaying it.

- Launch times: a batch opened at t_j launches at t_j + T if it times out, else (it filled,
  which happens in bursts) at about t_j.
- Local load: given that arrival i opens a batch, every earlier batch of the buffer launched by
  t_i, so the batches still running at its launch are those launched in [launch_i - busy, t_i).
  Their count X_i is a sum of independent Bernoullis, taken as a discretised normal with the
  same mean and variance (so a single-buffer plan, where nothing is random, gets exact
  counts; a Poisson law would invent tails there). In the first cold_start + busy seconds after
  the buffer's first launch every environment is still in INIT, so there X_i counts every
  launch since that first one.
- Cold starts (the simulator's InstancePool reuses the most recently freed environment and
  reclaims one idle for keep_alive_s): a launch needs the m-th environment when X_i >= m - 1,
  and that environment is cold if no launch needed it in the past keep_alive_s. With
  x_j = r_j * P(X_j >= m - 1), E[cold starts] = sum_m sum_i x_i * prod_{j in window} (1 - x_j),
  m up to max_concurrency.
- Waiting for an environment (max_concurrency c busy): P(X_i >= c), then an exponential wait of
  mean busy / max(c - E[X_i], 1) (M/M/c's conditional wait at the local load; in a local
  overload it stays at one service time per place), scaled by (1 + cs^2) / 2 for the service
  time's variability (Allen-Cunneen's M/G/c correction); plus, where launches outrun the servers
  for longer than a service time, a fluid backlog (Lindley's recursion on the expected work of
  each arrival's batch, with no capacity during the first INIT). Waits are weighted by the
  batch's expected size, since it is the big batches of a burst that queue.
- Start-up: launches during the first environment's INIT beyond max_concurrency wait for an
  environment; the estimator gives their requests a uniform extra wait in (0, cold_start).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

QUEUE_CLASSES = 8  # the wait-for-an-environment mixture is kept to this many exponentials
_LEVEL_SLACK_SD = 8.0  # levels beyond mean + 8 sd are never reached
_NO_WAIT_MS = 0.5  # fluid waits below this are rounding
_NO_WAIT_SHARE = 1e-6  # a share of batches that find every environment busy below this is none


@dataclass(frozen=True)
class PlatformLoad:
    """Expected cold starts, and who waits how long for an environment (per arrival's batch)."""

    cold_starts: float
    startup_overflow: float  # launches that wait for the first environments' INIT to end
    share: np.ndarray  # share of the buffer's requests in batches opened at each arrival
    backlog_ms: np.ndarray  # fluid wait: work queued ahead beyond what c servers hold
    busy_chance: np.ndarray  # P(all environments busy) from local fluctuations
    wait_class: np.ndarray  # index into class_means_ms for that exponential wait
    class_means_ms: np.ndarray
    startup_cold: float = 0.0  # the part of cold_starts from the INIT cascade at the start

    @property
    def waits(self) -> bool:
        """Whether any batch is expected to wait for an environment (beyond rounding)."""
        return bool(np.any(self.backlog_ms > _NO_WAIT_MS)
                    or float(np.sum(self.busy_chance * self.share)) > _NO_WAIT_SHARE)


Positions = Callable[[float], np.ndarray]  # offset_s -> searchsorted(t, t + offset_s, "left")


class _Launches:
    """Prefix sums of expected launches (and their Bernoulli variances) along the trace.

    Openings at arrival j that fill launch at t_j, those that time out at t_j + T; the launches
    in a window are differences of prefix sums at searchsorted positions.
    """

    def __init__(self, arrivals_s: np.ndarray, positions: Positions, openings: np.ndarray,
                 timeout_prob: np.ndarray, timeout_s: float) -> None:
        self.arrivals_s = arrivals_s
        self.positions = positions
        self.timeout_s = timeout_s
        filled = openings * (1.0 - timeout_prob)
        timed = openings * timeout_prob
        zero = np.zeros(1)
        self._filled = np.concatenate((zero, np.cumsum(filled)))
        self._timed = np.concatenate((zero, np.cumsum(timed)))
        self._filled_var = np.concatenate((zero, np.cumsum(filled * (1.0 - filled))))
        self._timed_var = np.concatenate((zero, np.cumsum(timed * (1.0 - timed))))

    def _between(self, f_lo: np.ndarray, f_hi: np.ndarray, t_lo: np.ndarray,
                 t_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f_hi, t_hi = np.maximum(f_hi, f_lo), np.maximum(t_hi, t_lo)
        mean = (self._filled[f_hi] - self._filled[f_lo]) + (self._timed[t_hi] - self._timed[t_lo])
        var = ((self._filled_var[f_hi] - self._filled_var[f_lo])
               + (self._timed_var[t_hi] - self._timed_var[t_lo]))
        return mean, np.maximum(var, 0.0)

    def shifted(self, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the launches in [t_i + start, t_i + end), for every i."""
        late, at = self.timeout_s, self.positions
        return self._between(at(start_s), at(end_s), at(start_s - late), at(end_s - late))

    def opened(self, start_s: np.ndarray, end_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the launches before `end` of batches opened from `start` on."""
        t, late = self.arrivals_s, self.timeout_s
        return self._between(*(np.searchsorted(t, x, side="left")
                               for x in (start_s, end_s, start_s, end_s - late)))


def _at_least(mean: np.ndarray, var: np.ndarray, k: float | np.ndarray) -> np.ndarray:
    """P(X >= k) for a count with this mean and variance (normal, continuity-corrected)."""
    gap = mean - k + 0.5
    sd = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        smooth = ndtr(gap / sd)
    return np.where(sd > 1e-6, smooth, (gap >= 0).astype(np.float64))


def _local_load(launches: _Launches, timeout_prob: np.ndarray,
                busy_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of X_i, the buffer's batches running when i's batch launches."""
    t, timeout_s = launches.arrivals_s, launches.timeout_s
    # a timed-out batch launches at t_i + T: window [t_i + T - busy, t_i), empty if busy <= T
    if busy_s > timeout_s:
        late_m, late_v = launches.shifted(timeout_s - busy_s, 0.0)
    else:
        late_m = late_v = np.zeros(t.size)
    early_m, early_v = launches.shifted(-busy_s, 0.0)
    mean = timeout_prob * late_m + (1.0 - timeout_prob) * early_m
    var = np.maximum(timeout_prob * late_v + (1.0 - timeout_prob) * early_v
                     + timeout_prob * (1.0 - timeout_prob) * (late_m - early_m) ** 2, 0.0)
    return mean, var


def _most_launches(launches: _Launches, busy_s: float, max_batch: int) -> np.ndarray:
    """A hard cap on X_i: batches close one after another, and the next one closes a timeout
    T later or once B more requests came, so a window of w seconds holding m arrivals sees at
    most 1 + floor(w / T) + floor(m / B) launches (at most m when T = 0)."""
    arrivals = launches.positions(0.0) - launches.positions(-busy_s)  # m in [t_i - busy, t_i)
    if launches.timeout_s <= 0:
        return arrivals.astype(np.float64)
    bound = 1.0 + np.floor(busy_s / launches.timeout_s) + arrivals // max(max_batch, 1)
    return np.minimum(bound, arrivals).astype(np.float64)


@dataclass(frozen=True)
class _Startup:
    """The INIT cascade at the buffer's first launch, averaged over where that falls."""

    created: np.ndarray  # P(the m-th environment is created then), m = 1..max_concurrency
    overflow: float  # expected launches that find every environment in INIT
    first: int  # the median index of the buffer's first arrival
    end_s: float  # when the cascade is over (at that median)


def _startup(launches: _Launches, timeout_prob: np.ndarray, p: float, servers: int,
             cold_s: float, busy_s: float) -> _Startup:
    """Every launch while the first environment is in INIT (cold + busy) needs another one."""
    t, timeout_s = launches.arrivals_s, launches.timeout_s
    if p >= 1.0:
        starts, weights = np.zeros(1, np.int64), np.ones(1)
    else:  # P(first = f) = p (1 - p)^f, over the f that hold all but 1e-6 of it
        horizon = int(min(t.size, np.ceil(np.log(1e-6) / np.log1p(-p)) + 1))
        starts = np.arange(horizon)
        weights = p * np.exp(starts * np.log1p(-p))
        weights /= weights.sum()
    # the first batch takes the arrivals until it closes (T, or ~0 when it fills); the
    # launches of the batches opened after that, during its INIT, each need an environment
    close_s = t[starts] + timeout_s * timeout_prob[starts]
    mean, var = launches.opened(np.nextafter(close_s, np.inf), close_s + cold_s + busy_s)
    top = int(np.max(mean + _LEVEL_SLACK_SD * np.sqrt(var))) + 2
    # at_least[k] = P(X >= k) for the X other launches: the (k + 1)-th environment is created;
    # zero beyond mean + slack sd
    at_least = np.zeros(max(servers, top) + 1)
    ks = np.arange(1, top + 1)[:, None]
    at_least[1: top + 1] = np.sum(weights * _at_least(mean, var, ks), axis=1)
    at_least[0] = 1.0
    first = _first_launch(p, t.size)
    return _Startup(at_least[:servers], float(np.sum(at_least[servers:])), first,
                    float(t[first]) + cold_s + busy_s)


def _first_launch(p: float, count: int) -> int:
    """The median index of the buffer's first arrival: (1 - p)^(i + 1) <= 1/2."""
    if p >= 1.0:
        return 0
    return int(min(count - 1, max(0, np.ceil(np.log(0.5) / np.log1p(-p)) - 1)))


def _cold_starts(openings: np.ndarray, mean: np.ndarray, var: np.ndarray, reach: np.ndarray,
                 keep_alive_start: np.ndarray, startup: _Startup, later: int) -> float:
    """After the start-up: sum over levels m of sum_i x_i * prod_{j in the keep-alive window}
    (1 - x_j), and the m-th environment also still warm from the start-up while that is within
    keep-alive.

    Level m only involves the arrivals whose count can reach m - 1 (`reach`: mean + slack sd),
    so the higher levels, reached only in bursts, cost little. `later` is the first arrival
    after the start-up cascade.
    """
    active = np.arange(openings.size)
    window = keep_alive_start
    total = float(np.sum(startup.created))
    for level in range(1, startup.created.size + 1):
        if level > 1:
            active = active[reach[active] >= level - 1.5]
            if active.size == 0:
                break
            window = np.searchsorted(active, keep_alive_start[active], side="left")
        need = 1.0 if level == 1 else _at_least(mean[active], var[active], level - 1)
        x = np.minimum(openings[active] * need, 1.0 - 1e-15)
        log_idle = np.concatenate(([0.0], np.cumsum(np.log1p(-x))))
        fresh = x * np.exp(log_idle[:-1] - log_idle[window])
        # environments from the start-up are warm while the window still reaches back to it
        warm = keep_alive_start[active] <= startup.first
        fresh = np.where(warm, fresh * (1.0 - startup.created[level - 1]), fresh)
        total += float(np.sum(fresh[active >= later]))
    return total


@dataclass(frozen=True)
class LaunchStream:
    """A buffer's batches as the platform sees them."""

    p: float  # the buffer's share of arrivals
    openings: np.ndarray  # expected batches opened at each arrival: p * q_i
    timeout_prob: np.ndarray  # P(that batch closes at its timeout)
    timeout_ms: float
    busy_ms: float  # mean model time of a batch
    work_ms: np.ndarray  # expected model time of the batch opened at each arrival, if one is
    size: np.ndarray  # expected requests in that batch
    max_batch: int  # B as batch formation used it (after any token budget)
    max_concurrency: int
    service_cv2: float = 1.0  # squared coefficient of variation of a batch's model time


def platform_load(arrivals_s: np.ndarray, positions: Positions, keep_alive_start: np.ndarray,
                  stream: LaunchStream, cold_ms: float) -> PlatformLoad:
    """Cold starts and environment waits of one buffer (see the module docstring).

    positions(offset_s) must return searchsorted(arrivals_s, arrivals_s + offset_s, "left")
    (the estimator's context caches them).
    """
    total = float(np.sum(stream.openings))
    if arrivals_s.size == 0 or total <= 0:
        none = np.zeros(arrivals_s.size)
        return PlatformLoad(0.0, 0.0, none, none, none, none.astype(np.int64), np.zeros(1))
    launches = _Launches(arrivals_s, positions, stream.openings, stream.timeout_prob,
                         stream.timeout_ms / 1000.0)
    busy_s, servers = stream.busy_ms / 1000.0, stream.max_concurrency
    mean, var = _local_load(launches, stream.timeout_prob, busy_s)
    reach = np.minimum(mean + _LEVEL_SLACK_SD * np.sqrt(var),
                       _most_launches(launches, busy_s, stream.max_batch))
    startup = _startup(launches, stream.timeout_prob, stream.p, servers, cold_ms / 1000.0,
                       busy_s)
    later = int(np.searchsorted(arrivals_s, startup.end_s))
    cold = _cold_starts(stream.openings, mean, var, reach, keep_alive_start, startup, later)
    requests = stream.openings * stream.size  # waits are per request: big batches count more
    share = requests / float(np.sum(requests))
    busy_chance = np.zeros(arrivals_s.size)
    near = np.nonzero(reach >= servers - 0.5)[0]
    busy_chance[near] = _at_least(mean[near], var[near], servers)
    wait_class, class_means = _classes(share * busy_chance,
                                       stream.busy_ms * (1.0 + stream.service_cv2) / 2.0
                                       / np.maximum(servers - mean, 1.0))
    init_s = (float(arrivals_s[startup.first]), startup.end_s - busy_s)
    backlog = _backlog_ms(arrivals_s, stream.openings * stream.work_ms, servers, stream.busy_ms,
                          init_s)
    return PlatformLoad(cold, startup.overflow, share, backlog, busy_chance, wait_class,
                        class_means, float(np.sum(startup.created)))


def _backlog_ms(arrivals_s: np.ndarray, work_ms: np.ndarray, servers: int, busy_ms: float,
                init_s: tuple[float, float]) -> np.ndarray:
    """Fluid wait before each arrival's batch: Lindley's recursion on expected work.

    U_i = max(0, U_{i-1} + w_{i-1} - c * (t_i - t_{i-1})), w the expected model time of the
    batches opened at each arrival, solved at once as a reflected cumulative sum; the servers
    give nothing while the first environments are in INIT (init_s = (start, end)). A batch
    waits for the work beyond what c - 1 other servers hold, shared by c:
    max(0, U_i - (c - 1) * busy) / c. Zero unless launches outrun the servers for a while.
    """
    gaps_ms = np.diff(arrivals_s) * 1000.0
    during = (arrivals_s[1:] > init_s[0]) & (arrivals_s[:-1] < init_s[1])
    lost_ms = (np.minimum(arrivals_s[1:], init_s[1]) - np.maximum(arrivals_s[:-1], init_s[0]))
    gaps_ms = gaps_ms - np.where(during, lost_ms * 1000.0, 0.0)
    walk = np.concatenate(([0.0], np.cumsum(work_ms[:-1] - servers * gaps_ms)))
    work = walk - np.minimum.accumulate(np.minimum(walk, 0.0))
    return np.maximum(work - (servers - 1) * busy_ms, 0.0) / servers


def _classes(weights: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group per-arrival exponential waits into at most QUEUE_CLASSES by mean (weighted)."""
    busy = np.nonzero(weights > 1e-12)[0]
    cut = np.zeros(weights.size, np.int64)
    if busy.size == 0:
        return cut, np.ones(1)
    order = busy[np.argsort(means[busy])]
    cum = np.cumsum(weights[order])
    cut[order] = np.minimum((cum / cum[-1] * QUEUE_CLASSES).astype(np.int64), QUEUE_CLASSES - 1)
    class_w = np.bincount(cut, weights=weights, minlength=QUEUE_CLASSES)
    class_m = np.bincount(cut, weights=weights * means, minlength=QUEUE_CLASSES)
    return cut, np.divide(class_m, class_w, out=np.ones(QUEUE_CLASSES), where=class_w > 0)
