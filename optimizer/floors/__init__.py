"""Floors beside the simulator: a proven lower bound on cost under the SLO, and a clairvoyant
schedule (an upper bound on the optimum). Together they bracket what any batching can cost."""
