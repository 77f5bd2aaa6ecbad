"""Trust in open projects: sample-count claims, per-address limits, proof of work, credit."""
