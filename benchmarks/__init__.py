"""Performance harnesses: throughput against a plain-Keras baseline, GPU check script."""
