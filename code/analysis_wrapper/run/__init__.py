"""One run: plan and decide, claim, run each job, publish and record it, on any executor."""
