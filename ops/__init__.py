"""Lab tooling beside the suite (not installed): shipping the GPU check, capturing smoke sweeps."""
