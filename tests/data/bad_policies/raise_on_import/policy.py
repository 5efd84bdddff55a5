"""Bad policy: raises while policy.py is imported."""

raise RuntimeError('deliberate import failure')
